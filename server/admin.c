/* admin.c - the admin API's HTTP side (docs/admin-api.md), on its own
 * listener (admin-listen): requests are read and bounded here, the caller
 * is authenticated (a JWT, or the payment provider's signature) and checked
 * against the route's roles (settlement/routes.h), and the route's SQL
 * function runs on the admin PostgreSQL connections (core/pgpool.h). A
 * movement into a wallet that the function asks for (a paid recharge, a
 * refund) then runs as a wallet script before the answer goes out. Lists
 * asked for as CSV are streamed page by page with chunked encoding.
 *
 * A request's state is on the heap (struct admin_req), not in lws's
 * per-session memory: a PostgreSQL call or a wallet script may still be
 * out when the client goes away, and its answer must find something to
 * land on. */
#include "server.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <jansson.h>

#include "clock.h"
#include "handshake.h"
#include "jobs.h"
#include "pgpool.h"
#include "prom.h"
#include "routes.h"
#include "sign.h"

#define ADMIN_PATH_MAX 512
#define ADMIN_ADDR_MAX 64
#define ADMIN_REQUEST_ID_MAX 64
/* Bytes of an answer written per WRITEABLE callback. */
#define ADMIN_CHUNK 16384
/* Rows of a CSV export asked for per call. */
#define ADMIN_CSV_PAGE "500"
/* A request may take this long once read (a PostgreSQL call, a wallet
 * script, each page of an export). */
#define ADMIN_ANSWER_TIMEOUT_S 30

struct admin_req {
    struct server *s;
    struct lws *wsi;            /* NULL once the connection is gone */
    struct pgpool_call *call;   /* the PostgreSQL call out, if any */
    int wallet_out;             /* a wallet script is out */

    enum api_method method;
    int method_ok;              /* GET, POST or PUT */
    int preflight;              /* OPTIONS: a browser asks whether it may (CORS) */
    char origin[CONFIG_STR_MAX]; /* the Origin header when it may read answers (CORS), else "" */
    char path[ADMIN_PATH_MAX];
    char request_id[ADMIN_REQUEST_ID_MAX + 1];
    char addr[ADMIN_ADDR_MAX];
    json_t *query;              /* the query string: name -> string */
    char *body;
    size_t body_len;
    int body_over;              /* longer than admin-body-max */
    const struct api_route *route;
    struct api_params params;
    struct jwt_claims who;
    char actor_role[16];
    json_t *ctx;                /* the call's context (CSV: for every page) */

    /* The answer. */
    unsigned status;
    const char *ctype;
    int csv;                    /* a CSV export: chunked, page after page */
    int csv_more;               /* another page to fetch once `out` is written */
    int answered;               /* status and the first bytes of out are set */
    int headers_sent, done, close_after, aborted;
    char *out;
    size_t out_len, out_cap, out_sent;
    unsigned char wbuf[LWS_PRE + ADMIN_CHUNK + 16];
};

struct admin_session {
    struct admin_req *req;
    int counted; /* in s->admin_sockets */
};

/* ---- The answer -------------------------------------------------------------- */

/* The statuses the API answers with (docs/admin-api.md), counted for the
 * metrics page; any other is counted as "other". */
static const unsigned admin_statuses[ADMIN_STATUSES] = ADMIN_STATUS_LIST;

static void count_answer(struct server *s, unsigned status)
{
    int i = 0;
    while (i < ADMIN_STATUSES - 1 && admin_statuses[i] != status)
        i++;
    s->admin_answered[i]++;
}

static void out_put(struct admin_req *q, const char *p, size_t n)
{
    if (q->out_len + n + 1 > q->out_cap) {
        size_t cap = q->out_cap ? q->out_cap : 1024;
        while (cap < q->out_len + n + 1)
            cap *= 2;
        char *np = realloc(q->out, cap);
        if (!np) {
            log_msg(LOG_ERROR, "admin: out of memory for an answer");
            q->close_after = 1;
            return;
        }
        q->out = np;
        q->out_cap = cap;
    }
    memcpy(q->out + q->out_len, p, n);
    q->out_len += n;
    q->out[q->out_len] = '\0';
}

/* Starts writing the answer (the WRITEABLE callbacks do the rest). */
static void answer_go(struct admin_req *q)
{
    q->answered = 1;
    if (q->wsi)
        lws_callback_on_writable(q->wsi);
}

static void answer_json(struct admin_req *q, unsigned status, json_t *body)
{
    if (q->headers_sent) {
        /* A CSV export that failed after its first page: the connection is
         * closed, so that the client sees a cut response, not an end. */
        json_decref(body);
        q->aborted = 1;
        if (q->wsi)
            lws_callback_on_writable(q->wsi);
        return;
    }
    q->csv = q->csv_more = 0;
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    q->status = status;
    q->ctype = "application/json";
    q->out_len = q->out_sent = 0;
    if (text) {
        out_put(q, text, strlen(text));
        free(text);
    } else {
        q->status = HTTP_STATUS_INTERNAL_SERVER_ERROR;
        static const char oom[] = "{\"error\":{\"code\":\"internal\",\"message\":\"out of memory\"}}";
        out_put(q, oom, sizeof oom - 1);
    }
    out_put(q, "\n", 1);
    answer_go(q);
}

/* The HTTP status of an error code (docs/admin-api.md). */
static unsigned error_status(const char *code)
{
    static const struct {
        const char *code;
        unsigned status;
    } table[] = {
        {"bad_json", 400},
        {"bad_field", 400},
        {"unauthorized", 401},
        {"bad_signature", 401},
        {"stale_timestamp", 401},
        {"forbidden", 403},
        {"not_found", 404},
        {"method_not_allowed", 405},
        {"idempotency_conflict", 409},
        {"invalid_state", 409},
        {"refund_exceeds_order", 409},
        {"insufficient_available", 409},
        {"amount_mismatch", 409},
        {"body_too_large", 413},
        {"below_minimum", 422},
        {"account_frozen", 403},
        {"risk_rate_limited", 429},
        {"unavailable", 503},
        {"internal", 500},
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (strcmp(table[i].code, code) == 0)
            return table[i].status;
    return 0;
}

static void answer_error(struct admin_req *q, const char *code, const char *message, const char *field)
{
    unsigned status = error_status(code);
    risk_count_api(&q->s->risk, code);
    if (!status) {
        log_msg(LOG_ERROR, "admin: %s %s: unknown error code %.64s (%.200s)", api_method_name(q->method), q->path,
                code, message);
        status = 500;
        code = "internal";
        message = "internal error";
    }
    if (status == 500)
        log_msg(LOG_ERROR, "admin: %s %s answered internal (request %s)", api_method_name(q->method), q->path,
                q->request_id);
    json_t *err = json_pack("{s:s, s:s}", "code", code, "message", message && *message ? message : code);
    if (err && field && *field)
        json_object_set_new(err, "field", json_string(field));
    answer_json(q, status, err ? json_pack("{s:o}", "error", err) : NULL);
}

/* Writes the headers, then the body a chunk per call. Returns -1 to close
 * the connection. */
/* The CORS headers of an answer to a browser page of an allowed origin
 * (handshake_cors_allowed): it may read the answer and its X-Request-Id;
 * a preflight also learns what it may send. Every answer varies by Origin.
 * Returns 0, or nonzero when the headers do not fit. */
static int cors_headers(struct admin_req *q, unsigned char **p, unsigned char *end)
{
    static const struct {
        const char *name, *value;
    } preflight[] = {
        {"access-control-allow-methods:", "GET, POST, PUT"},
        {"access-control-allow-headers:", "Authorization, Content-Type, X-Request-Id"},
        {"access-control-max-age:", "600"},
    };
#define HDR(n, v) lws_add_http_header_by_name(q->wsi, (const unsigned char *)(n), (const unsigned char *)(v), \
                                              (int)strlen(v), p, end)
    int bad = HDR("vary:", "Origin");
    if (bad || !q->origin[0])
        return bad;
    bad = HDR("access-control-allow-origin:", q->origin) || HDR("access-control-expose-headers:", "X-Request-Id");
    for (size_t i = 0; !bad && q->preflight && i < sizeof preflight / sizeof preflight[0]; i++)
        bad = HDR(preflight[i].name, preflight[i].value);
#undef HDR
    return bad;
}

/* Writes what it can of q's answer. Returns 0 (more to write later), 1 when
 * the answer is written whole and the connection may carry the next request
 * (the caller ends the transaction), or -1 to close the connection. */
static int admin_writeable(struct admin_req *q)
{
    struct lws *wsi = q->wsi;
    if (q->aborted)
        return -1;
    if (!q->answered || q->done)
        return 0;
    if (!q->headers_sent) {
        unsigned char hdr[LWS_PRE + 1024], *start = hdr + LWS_PRE, *p = start, *end = hdr + sizeof hdr - 1;
        lws_filepos_t len = q->csv ? LWS_ILLEGAL_HTTP_CONTENT_LEN : (lws_filepos_t)q->out_len;
        int bad = lws_add_http_header_status(wsi, q->status, &p, end) ||
                  lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CONTENT_TYPE, (const unsigned char *)q->ctype,
                                               (int)strlen(q->ctype), &p, end) ||
                  lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CACHE_CONTROL, (const unsigned char *)"no-store",
                                               8, &p, end) ||
                  lws_add_http_header_by_name(wsi, (const unsigned char *)"x-request-id:",
                                              (const unsigned char *)q->request_id, (int)strlen(q->request_id), &p,
                                              end);
        if (!bad && q->csv)
            bad = lws_add_http_header_by_name(wsi, (const unsigned char *)"transfer-encoding:",
                                              (const unsigned char *)"chunked", 7, &p, end);
        else if (!bad)
            bad = lws_add_http_header_content_length(wsi, len, &p, end);
        if (!bad && q->status == 503)
            bad = lws_add_http_header_by_name(wsi, (const unsigned char *)"retry-after:", (const unsigned char *)"1",
                                              1, &p, end);
        if (!bad && q->close_after)
            bad = lws_add_http_header_by_token(wsi, WSI_TOKEN_CONNECTION, (const unsigned char *)"close", 5, &p,
                                               end);
        if (!bad)
            bad = cors_headers(q, &p, end) || http_security_headers(&q->s->cfg, wsi, 0, &p, end);
        if (bad || lws_finalize_write_http_header(wsi, start, &p, end))
            return -1;
        q->headers_sent = 1;
        count_answer(q->s, q->status);
        lws_callback_on_writable(wsi);
        return 0;
    }
    size_t left = q->out_len - q->out_sent, n = left < ADMIN_CHUNK ? left : ADMIN_CHUNK;
    unsigned char *b = q->wbuf + LWS_PRE;
    size_t len = 0;
    int final;
    if (q->csv) {
        /* Chunked: each write is one chunk; the zero-length chunk ends it. */
        if (n == 0 && q->csv_more)
            return 0; /* the next page is being fetched */
        len = (size_t)snprintf((char *)b, 16, "%zx\r\n", n);
        memcpy(b + len, q->out + q->out_sent, n);
        len += n;
        memcpy(b + len, "\r\n", 2);
        len += 2;
        final = n == 0;
    } else {
        if (n > 0) /* a 204 has no body, and no buffer */
            memcpy(b, q->out + q->out_sent, n);
        len = n;
        final = n == left;
    }
    if (lws_write(wsi, b, len, final ? LWS_WRITE_HTTP_FINAL : LWS_WRITE_HTTP) != (int)len)
        return -1;
    q->out_sent += n;
    if (q->csv && q->out_sent == q->out_len) {
        q->out_len = q->out_sent = 0;
        if (q->csv_more && !final)
            return 0; /* on_csv_page continues */
    }
    if (!final) {
        lws_callback_on_writable(wsi);
        return 0;
    }
    q->done = 1;
    return q->close_after ? -1 : 1;
}

/* ---- CSV ------------------------------------------------------------------------ */

static void csv_field(struct admin_req *q, json_t *v)
{
    char num[32];
    const char *text = NULL;
    char *owned = NULL;
    if (!v || json_is_null(v)) {
        return;
    } else if (json_is_string(v)) {
        text = json_string_value(v);
    } else if (json_is_integer(v)) {
        snprintf(num, sizeof num, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        text = num;
    } else if (json_is_true(v) || json_is_false(v)) {
        text = json_is_true(v) ? "true" : "false";
    } else {
        text = owned = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    }
    if (!text)
        return;
    if (strpbrk(text, ",\"\r\n") || (text[0] && strchr("=+-@", text[0]) && !json_is_integer(v))) {
        /* Quoted, quotes doubled; a leading =, +, - or @ is a formula to a
         * spreadsheet (CSV injection): it gets a leading apostrophe. */
        out_put(q, "\"", 1);
        if (text[0] && strchr("=+-@", text[0]))
            out_put(q, "'", 1);
        for (const char *c = text; *c; c++)
            out_put(q, *c == '"' ? "\"\"" : c, *c == '"' ? 2 : 1);
        out_put(q, "\"", 1);
    } else {
        out_put(q, text, strlen(text));
    }
    free(owned);
}

static void csv_header(struct admin_req *q)
{
    out_put(q, q->route->csv, strlen(q->route->csv));
    out_put(q, "\r\n", 2);
}

/* Appends a page's items as rows, in the route's column order. */
static void csv_rows(struct admin_req *q, json_t *items)
{
    size_t i;
    json_t *item;
    json_array_foreach(items, i, item) {
        const char *col = q->route->csv;
        while (*col) {
            size_t n = strcspn(col, ",");
            char name[64];
            snprintf(name, sizeof name, "%.*s", (int)n, col);
            csv_field(q, json_object_get(item, name));
            col += n;
            if (*col == ',') {
                out_put(q, ",", 1);
                col++;
            }
        }
        out_put(q, "\r\n", 2);
    }
}

/* ---- Calls ---------------------------------------------------------------------- */

static void req_free(struct admin_req *q)
{
    json_decref(q->query);
    json_decref(q->ctx);
    free(q->body);
    free(q->out);
    free(q);
}

static void call_sql(struct admin_req *q);

static void on_wallet(void *priv, int ok, enum err code, int64_t balance)
{
    struct admin_req *q = priv;
    q->wallet_out = 0;
    if (!q->wsi) {
        req_free(q);
        return;
    }
    json_t *body = json_loads(q->out ? q->out : "{}", 0, NULL);
    q->out_len = 0;
    if (ok && body) {
        json_object_set_new(body, "balance", json_integer(balance));
        answer_json(q, q->status, body);
        return;
    }
    json_decref(body);
    if (code == ERR_UNAVAILABLE || code == ERR_BACKLOGGED)
        answer_error(q, "unavailable",
                     "recorded, but the wallet could not be credited now (Redis): tipcastd retries it by itself, "
                     "and the same request may be sent again",
                     NULL);
    else
        answer_error(q, "internal", err_code(code), NULL);
}

/* Adds "token" to the answer of the overlay-token route: a JWT of role
 * overlay for body.room until body.exp, signed with the secret the server
 * signs with (config_sign_secret). Returns 0, or -1. */
static int overlay_token_add(struct admin_req *q, json_t *body)
{
    const struct config_secret *key = config_sign_secret(&q->s->cfg);
    const char *room = json_string_value(json_object_get(body, "room"));
    json_t *exp = json_object_get(body, "exp");
    char token[JWT_MAX_BYTES + 1];
    if (!key || !room || !json_is_integer(exp) ||
        jwt_sign(key->key, (size_t)key->key_len, key->kid[0] ? key->kid : NULL, room, ROLE_OVERLAY,
                 (int64_t)json_integer_value(exp), token, sizeof token) < 0)
        return -1;
    return json_object_set_new(body, "token", json_string(token));
}

static void on_sql(void *priv, const struct pgpool_result *r)
{
    struct admin_req *q = priv;
    q->call = NULL;
    if (r->outcome == PGPOOL_UNAVAILABLE) {
        answer_error(q, "unavailable", "PostgreSQL is unavailable; retry", NULL);
        return;
    }
    if (r->outcome == PGPOOL_REFUSED) {
        answer_error(q, r->code, r->detail, strcmp(r->code, "bad_field") == 0 ? r->hint : NULL);
        return;
    }
    json_error_t jerr;
    json_t *res = PQntuples(r->res) == 1 ? json_loads(PQgetvalue(r->res, 0, 0), 0, &jerr) : NULL;
    json_t *status = json_object_get(res, "status"), *body = json_object_get(res, "body");
    if (!json_is_integer(status) || !json_is_object(body)) {
        log_msg(LOG_ERROR, "admin: %s did not return {status, body}", q->route->fn);
        json_decref(res);
        answer_error(q, "internal", "internal error", NULL);
        return;
    }
    if (q->csv) {
        json_t *next = json_object_get(body, "next");
        csv_rows(q, json_object_get(body, "items"));
        q->csv_more = json_is_string(next);
        if (q->csv_more)
            json_object_set(json_object_get(q->ctx, "query"), "after", next);
        json_decref(res);
        if (!q->answered) {
            q->status = 200;
            answer_go(q);
        } else if (q->wsi) {
            lws_callback_on_writable(q->wsi);
        }
        return;
    }
    json_t *w = json_object_get(body, "wallet") ? NULL : json_object_get(res, "wallet");
    q->status = (unsigned)json_integer_value(status);
    if (w && q->status < 300) {
        char *text = json_dumps(body, JSON_COMPACT);
        q->out_len = 0;
        if (text)
            out_put(q, text, strlen(text));
        free(text);
        /* The function asked for a movement into a wallet: it runs before
         * the answer, which then carries the wallet's balance. */
        q->wallet_out = 1; /* on_wallet may run from within jobs_credit */
        int rc = jobs_credit(&q->s->wallet, w, on_wallet, q);
        if (rc < 0)
            q->wallet_out = 0;
        json_decref(res);
        if (rc < 0) {
            log_msg(LOG_ERROR, "admin: %s returned a wallet movement that cannot be read", q->route->fn);
            answer_error(q, "internal", "internal error", NULL);
        }
        return;
    }
    if ((q->route->flags & API_OVERLAY_TOKEN) && q->status < 300 && overlay_token_add(q, body) < 0) {
        json_decref(res);
        answer_error(q, "internal", "cannot sign the token", NULL);
        return;
    }
    json_incref(body);
    json_decref(res);
    answer_json(q, q->status, body);
}

static void call_sql(struct admin_req *q)
{
    char sql[128];
    snprintf(sql, sizeof sql, "SELECT %s($1::jsonb)::text", q->route->fn);
    char *ctx = json_dumps(q->ctx, JSON_COMPACT);
    const char *params[1] = {ctx};
    q->call = ctx ? pgpool_call(q->s->admin_pool, sql, 1, params, on_sql, q) : NULL;
    free(ctx);
    if (!q->call) {
        answer_error(q, "unavailable", "PostgreSQL is unavailable or busy; retry", NULL);
        return;
    }
    if (q->wsi)
        lws_set_timeout(q->wsi, PENDING_TIMEOUT_HTTP_CONTENT, ADMIN_ANSWER_TIMEOUT_S);
}

/* ---- A request ----------------------------------------------------------------- */

/* Reads the query string into an object of strings (a name given twice:
 * the last). */
static json_t *read_query(struct lws *wsi)
{
    json_t *o = json_object();
    char frag[512];
    for (int i = 0; o && i < 32; i++) {
        int n = lws_hdr_copy_fragment(wsi, frag, sizeof frag, WSI_TOKEN_HTTP_URI_ARGS, i);
        if (n <= 0)
            break;
        char *eq = strchr(frag, '=');
        if (!eq || eq == frag)
            continue;
        *eq = '\0';
        json_t *v = json_stringn(eq + 1, strlen(eq + 1)); /* NULL when not UTF-8: dropped */
        if (v)
            json_object_set_new(o, frag, v);
    }
    return o;
}

static int copy_header(struct lws *wsi, const char *name, char *buf, int cap)
{
    int n = lws_hdr_custom_length(wsi, name, (int)strlen(name));
    if (n <= 0 || n >= cap)
        return n <= 0 ? 0 : -1;
    return lws_hdr_custom_copy(wsi, buf, cap, name, (int)strlen(name)) < 0 ? -1 : 1;
}

/* The same for a header lws knows by token (Origin, Host). */
static int copy_token(struct lws *wsi, enum lws_token_indexes tok, char *buf, int cap)
{
    int n = lws_hdr_total_length(wsi, tok);
    if (n <= 0 || n >= cap)
        return n <= 0 ? 0 : -1;
    return lws_hdr_copy(wsi, buf, cap, tok) < 0 ? -1 : 1;
}

static int request_id_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > ADMIN_REQUEST_ID_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '.' ||
              c == ':' || c == '-'))
            return 0;
    }
    return 1;
}

/* The token of "Authorization: Bearer <token>" into claims. Returns NULL,
 * or the reason it is refused. */
static const char *authenticate(struct admin_req *q)
{
    struct lws *wsi = q->wsi;
    char auth[JWT_MAX_BYTES + 16];
    int n = lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_AUTHORIZATION);
    if (n <= 0)
        return "an Authorization: Bearer token is required";
    if (n >= (int)sizeof auth || lws_hdr_copy(wsi, auth, sizeof auth, WSI_TOKEN_HTTP_AUTHORIZATION) < 0)
        return "the token is too long";
    if (strncasecmp(auth, "Bearer ", 7) != 0)
        return "the Authorization header must be Bearer <token>";
    const char *tok = auth + 7;
    enum jwt_result r = jwt_verify(&q->s->cfg, tok, strlen(tok), clock_wall_ms() / 1000, &q->who);
    if (r != JWT_OK) {
        static char why[64];
        snprintf(why, sizeof why, "token refused: %s", jwt_result_name(r));
        return why;
    }
    snprintf(q->actor_role, sizeof q->actor_role, "%s", role_name(q->who.role));
    return NULL;
}

/* The payment callback: the provider's signature instead of a token. A
 * refusal is audited (tipcast_api_payment_refused). */
static int check_signature(struct admin_req *q)
{
    struct lws *wsi = q->wsi;
    const struct config *cfg = &q->s->cfg;
    if (!cfg->payment_secret[0]) {
        answer_error(q, "unavailable", "payment callbacks are off (payment-secret is not set)", NULL);
        return -1;
    }
    char ts[32], sig[SIGN_HEADER_MAX + 8];
    int has_ts = copy_header(wsi, "x-tipcast-timestamp:", ts, sizeof ts);
    int has_sig = copy_header(wsi, "x-tipcast-signature:", sig, sizeof sig);
    enum sign_result r = sign_check(cfg->payment_secret, strlen(cfg->payment_secret), has_ts > 0 ? ts : NULL,
                                    has_sig > 0 ? sig : NULL, q->body ? q->body : "", q->body_len,
                                    clock_wall_ms() / 1000);
    snprintf(q->who.sub, sizeof q->who.sub, "payment-provider");
    snprintf(q->actor_role, sizeof q->actor_role, "provider");
    if (r == SIGN_OK)
        return 0;
    const char *code = r == SIGN_STALE ? "stale_timestamp" : "bad_signature";
    /* The audit row is written on the side; the answer does not wait. */
    json_t *ctx = json_pack("{s:s, s:s, s:s, s:s, s:s}", "actor", q->who.sub, "role", q->actor_role, "request_id",
                            q->request_id, "client_addr", q->addr, "outcome", code);
    char *text = ctx ? json_dumps(ctx, JSON_COMPACT) : NULL;
    const char *params[1] = {text};
    if (!text || !pgpool_call(q->s->admin_pool, "SELECT tipcast_api_payment_refused($1::jsonb)::text", 1, params,
                              NULL, NULL))
        log_msg(LOG_WARN, "admin: a refused payment callback (%s) could not be audited", code);
    free(text);
    json_decref(ctx);
    answer_error(q, code,
                 r == SIGN_STALE ? "X-Tipcast-Timestamp is more than 300 s from now"
                                 : "X-Tipcast-Signature is missing or does not match the body",
                 NULL);
    return -1;
}

/* 1 when a body that jansson refused is valid JSON but for an integer past
 * int64 (what jansson cannot hold): read again with such integers as
 * doubles, the first member holding one names the field. An amount is
 * then refused like any amount out of range, not as malformed JSON. */
static int too_big_integer(const char *body, size_t len, char *field, size_t cap)
{
    json_t *o = json_loadb(body, len, JSON_REJECT_DUPLICATES | JSON_DECODE_INT_AS_REAL, NULL);
    const char *key;
    json_t *v;
    int found = 0;
    if (json_is_object(o))
        json_object_foreach(o, key, v) {
            if (json_is_real(v) && (json_real_value(v) >= 9223372036854775807.0 ||
                                    json_real_value(v) <= -9223372036854775808.0)) {
                snprintf(field, cap, "%s", key);
                found = 1;
                break;
            }
        }
    json_decref(o);
    return found;
}

static void dispatch(struct admin_req *q)
{
    struct server *s = q->s;
    int other = 0;
    if (!q->method_ok) {
        /* A method no route takes: 405 where the path exists, 404 where not. */
        int exists = 0;
        for (int m = 0; m < API_METHODS && !exists; m++)
            exists = api_route_find((enum api_method)m, q->path, &q->params, &other) != NULL;
        answer_error(q, exists ? "method_not_allowed" : "not_found",
                     exists ? "the admin API takes GET, POST and PUT" : "no such route (docs/admin-api.md)", NULL);
        return;
    }
    q->route = api_route_find(q->method, q->path, &q->params, &other);
    if (!q->route) {
        answer_error(q, other ? "method_not_allowed" : "not_found",
                     other ? "this path takes another method" : "no such route (docs/admin-api.md)", NULL);
        return;
    }
    const struct api_route *rt = q->route;
    if (q->body_over) {
        q->close_after = 1;
        answer_error(q, "body_too_large", "the body is larger than admin-body-max", NULL);
        return;
    }
    if (rt->flags & API_SIGNED) {
        if (check_signature(q) < 0)
            return;
    } else {
        const char *why = authenticate(q);
        if (why) {
            answer_error(q, "unauthorized", why, NULL);
            return;
        }
        if (!api_route_allows(rt, q->who.role)) {
            answer_error(q, "forbidden", "this role may not call this route (docs/admin-api.md, Roles)", NULL);
            return;
        }
        if ((rt->own & API_ROLE(q->who.role)) && q->params.n > 0 && strcmp(q->params.value[0], q->who.sub) != 0) {
            answer_error(q, "forbidden", "this role may only read its own", NULL);
            return;
        }
    }
    if (!rt->fn) { /* GET /api/v1/me */
        answer_json(q, 200, json_pack("{s:s, s:s}", "sub", q->who.sub, "role", q->actor_role));
        return;
    }
    json_t *body = json_null();
    if ((rt->flags & API_BODY) && q->body_len > 0) {
        json_error_t jerr;
        json_decref(body);
        body = json_loadb(q->body, q->body_len, JSON_REJECT_DUPLICATES, &jerr);
        char field[64];
        if (!body && too_big_integer(q->body, q->body_len, field, sizeof field)) {
            answer_error(q, "bad_field", "an amount must be an integer from 1 to 2^53 - 1", field);
            return;
        }
        if (!json_is_object(body)) {
            char msg[200];
            snprintf(msg, sizeof msg, "the body must be a JSON object%s%s", body ? "" : ": ", body ? "" : jerr.text);
            json_decref(body);
            answer_error(q, "bad_json", msg, NULL);
            return;
        }
        if (api_body_unknown(rt, body, field, sizeof field) < 0) {
            json_decref(body);
            answer_error(q, "bad_field", "unknown field: this route's body has only the fields docs/openapi.yaml lists",
                         field);
            return;
        }
    } else if (rt->flags & API_BODY_REQUIRED) {
        answer_error(q, "bad_json", "this route takes a JSON object body", NULL);
        return;
    }
    const char *format = json_string_value(json_object_get(q->query, "format"));
    if (format && strcmp(format, "json") != 0 && !(strcmp(format, "csv") == 0 && rt->csv)) {
        json_decref(body);
        answer_error(q, "bad_field", rt->csv ? "format is json or csv" : "this route has no CSV form", "format");
        return;
    }
    if (format && strcmp(format, "csv") == 0) {
        q->csv = 1;
        q->ctype = "text/csv; charset=utf-8";
        json_object_set_new(q->query, "limit", json_string(ADMIN_CSV_PAGE));
        json_object_del(q->query, "after");
        csv_header(q);
    }
    json_t *path = json_object();
    for (int i = 0; path && i < q->params.n; i++)
        json_object_set_new(path, q->params.name[i], json_string(q->params.value[i]));
    q->ctx = json_pack("{s:s, s:s, s:s, s:s, s:b, s:o, s:O, s:o, s:{s:i, s:i}}", "actor", q->who.sub, "role",
                       q->actor_role, "request_id", q->request_id, "client_addr", q->addr, "webhooks",
                       config_webhooks_on(&s->cfg), "path", path, "query", q->query, "body", body, "settings",
                       "settlement_delay_days", s->cfg.settlement_delay_days, "withdrawal_min",
                       s->cfg.withdrawal_min);
    if (!q->ctx) {
        answer_error(q, "internal", "out of memory", NULL);
        return;
    }
    call_sql(q);
}

/* The CSV page written: fetch the next. */
static void csv_continue(struct admin_req *q)
{
    if (q->csv && q->csv_more && !q->call && q->out_len == 0 && !q->done && !q->aborted)
        call_sql(q);
}

/* ---- The protocol callback ------------------------------------------------------ */

static void session_end(struct admin_session *as)
{
    struct admin_req *q = as->req;
    as->req = NULL;
    if (!q)
        return;
    q->wsi = NULL;
    if (q->call) {
        pgpool_cancel(q->call);
        q->call = NULL;
    }
    if (!q->wallet_out)
        req_free(q);
}

static int begin(struct server *s, struct lws *wsi, struct admin_session *as, const char *path)
{
    session_end(as);
    struct admin_req *q = calloc(1, sizeof *q);
    if (!q)
        return -1;
    as->req = q;
    q->s = s;
    q->wsi = wsi;
    snprintf(q->path, sizeof q->path, "%s", path);
    if (lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI) > 0)
        q->method = API_GET, q->method_ok = 1;
    else if (lws_hdr_total_length(wsi, WSI_TOKEN_POST_URI) > 0)
        q->method = API_POST, q->method_ok = 1;
    else if (lws_hdr_total_length(wsi, WSI_TOKEN_PUT_URI) > 0)
        q->method = API_PUT, q->method_ok = 1;
    else if (lws_hdr_total_length(wsi, WSI_TOKEN_OPTIONS_URI) > 0)
        q->preflight = 1;
    char host[CONFIG_STR_MAX];
    if (copy_token(wsi, WSI_TOKEN_ORIGIN, q->origin, sizeof q->origin) != 1 ||
        copy_token(wsi, WSI_TOKEN_HOST, host, sizeof host) != 1 || !handshake_cors_allowed(&s->cfg, q->origin, host))
        q->origin[0] = '\0';
    if (copy_header(wsi, "x-request-id:", q->request_id, sizeof q->request_id) != 1 ||
        !request_id_ok(q->request_id)) {
        /* tipcastd makes one: the node, the time and a counter. */
        static uint64_t seq;
        snprintf(q->request_id, sizeof q->request_id, "adm-%" PRIx64 "-%" PRIu64, (uint64_t)clock_wall_ms(), ++seq);
    }
    if (lws_get_peer_simple(wsi, q->addr, sizeof q->addr) == NULL)
        snprintf(q->addr, sizeof q->addr, "unknown");
    q->query = read_query(wsi);
    q->ctype = "application/json";
    if (!q->query)
        return -1;
    return 0;
}

/* The plain pages of the admin listener: health and metrics. Returns 1 when
 * `path` was one of them (answered). */
static int plain_page(struct admin_req *q)
{
    struct server *s = q->s;
    if (strcmp(q->path, "/healthz") == 0) {
        answer_json(q, 200, json_pack("{s:s}", "status", "ok"));
        return 1;
    }
    if (strcmp(q->path, "/readyz") == 0) {
        unsigned status;
        json_t *body = server_readiness(s, &status);
        answer_json(q, status, body);
        return 1;
    }
    if (strcmp(q->path, "/metrics") == 0) {
        q->out = malloc(METRICS_PAGE_MAX);
        long n = q->out ? metrics_write(s, q->out, METRICS_PAGE_MAX) : -1;
        if (n < 0) {
            free(q->out);
            q->out = NULL;
            answer_error(q, "internal", "cannot make the metrics page", NULL);
            return 1;
        }
        q->out_cap = METRICS_PAGE_MAX;
        q->out_len = (size_t)n;
        q->status = 200;
        q->ctype = PROM_CONTENT_TYPE;
        answer_go(q);
        return 1;
    }
    return 0;
}

/* The Content-Length of the request, 0 when none, -1 when not a number. */
static long long content_length(struct lws *wsi)
{
    char len[24];
    if (lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH) <= 0)
        return 0;
    if (lws_hdr_copy(wsi, len, sizeof len, WSI_TOKEN_HTTP_CONTENT_LENGTH) < 0 || !len[0] ||
        strspn(len, "0123456789") != strlen(len) || strlen(len) > 12)
        return -1;
    return atoll(len);
}

int admin_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len)
{
    struct server *s = lws_context_user(lws_get_context(wsi));
    struct admin_session *as = user;
    switch (reason) {
    case LWS_CALLBACK_HTTP: {
        if (begin(s, wsi, as, in) < 0)
            return -1;
        struct admin_req *q = as->req;
        if (q->method == API_GET && plain_page(q))
            return 0;
        if (q->preflight) {
            /* Answered whatever the origin: without the CORS headers (an
             * origin not allowed) the browser sends nothing more. */
            q->status = HTTP_STATUS_NO_CONTENT;
            q->ctype = "text/plain; charset=utf-8";
            answer_go(q);
            return 0;
        }
        if (lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_TRANSFER_ENCODING) > 0) {
            q->close_after = 1;
            answer_error(q, "bad_json", "send the body with a Content-Length, not chunked", NULL);
            return 0;
        }
        long long n = content_length(wsi);
        if (n < 0 || n > s->cfg.admin_body_max) {
            q->close_after = 1;
            answer_error(q, n < 0 ? "bad_json" : "body_too_large",
                         n < 0 ? "Content-Length is not a number" : "the body is larger than admin-body-max", NULL);
            return 0;
        }
        if (n > 0 && (q->method == API_POST || q->method == API_PUT)) {
            q->body = malloc((size_t)n + 1);
            if (!q->body)
                return -1;
            lws_set_timeout(wsi, PENDING_TIMEOUT_HTTP_CONTENT, s->cfg.http_timeout_s);
            return 0; /* the body follows: HTTP_BODY, then HTTP_BODY_COMPLETION */
        }
        dispatch(q);
        return 0;
    }
    case LWS_CALLBACK_HTTP_BODY: {
        struct admin_req *q = as->req;
        if (!q || !q->body)
            return 0;
        if (q->body_len + len > (size_t)s->cfg.admin_body_max) {
            q->body_over = 1;
            return 0;
        }
        memcpy(q->body + q->body_len, in, len);
        q->body_len += len;
        q->body[q->body_len] = '\0';
        return 0;
    }
    case LWS_CALLBACK_HTTP_BODY_COMPLETION:
        if (as->req && !as->req->answered && !as->req->call)
            dispatch(as->req);
        return 0;
    case LWS_CALLBACK_HTTP_WRITEABLE: {
        if (!as->req)
            return 0;
        int rc = admin_writeable(as->req);
        if (rc < 0)
            return -1;
        if (rc == 1) {
            /* The request is done: free it now. Ending the transaction may
             * run the next request of a keep-alive connection (a browser's
             * call after its preflight) and replace this session's user
             * data, so nothing of `as` is touched after it. */
            session_end(as);
            return lws_http_transaction_completed(wsi) ? -1 : 0;
        }
        if (as->req->csv)
            csv_continue(as->req);
        return 0;
    }
    case LWS_CALLBACK_SERVER_NEW_CLIENT_INSTANTIATED:
        if (s->admin_sockets >= s->cfg.admin_max_connections) {
            log_msg(LOG_WARN, "admin: admin-max-connections (%d) reached: a connection is refused",
                    s->cfg.admin_max_connections);
            return -1;
        }
        lws_set_opaque_user_data(wsi, &s->admin_sockets);
        s->admin_sockets++;
        /* An answer goes out as headers, then body: two writes that Nagle's
         * algorithm would hold against the client's delayed ACK (40 ms a
         * call, measured). */
        int fd = lws_get_socket_fd(wsi), one = 1;
        if (fd >= 0 && setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) < 0)
            log_msg(LOG_DEBUG, "admin: TCP_NODELAY not set");
        return 0;
    case LWS_CALLBACK_WSI_DESTROY:
        if (s && lws_get_opaque_user_data(wsi) == &s->admin_sockets) {
            lws_set_opaque_user_data(wsi, NULL);
            s->admin_sockets--;
        }
        return 0;
    case LWS_CALLBACK_CLOSED_HTTP:
        if (as)
            session_end(as);
        return 0;
    case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE:
        lws_return_http_status(wsi, HTTP_STATUS_BAD_REQUEST, "no WebSocket on the admin listener");
        return 1;
    default:
        return lws_callback_http_dummy(wsi, reason, user, in, len);
    }
}

size_t admin_session_size(void) { return sizeof(struct admin_session); }
