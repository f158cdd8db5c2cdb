/* recon.c - one reconciliation run (see recon.h): Redis read at its cuts,
 * copied into PostgreSQL's snapshot, compared there by
 * tipcast_reconcile_check (007_reconcile.sql). */
#include "recon.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "ledger_sql.h"
#include "outbox.h"

extern const char lua_recon_stream[];
extern const char lua_recon_wallets[];
extern const char lua_recon_board[];

/* The rooms' keys (rooms/roomkeys.h, leaderboard/board.h: a layer this one
 * does not include): the all-time board and the watermarks. */
#define RECON_ROOM_WM_MATCH "tc:{r:*}:wm"

/* ---- COPY rows: storage's growing buffer (ledger_sql.h) ------------------- */

static void rb_fmt(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void rb_fmt(struct sbuf *b, const char *fmt, ...)
{
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n > 0)
        sbuf_put(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

/* A text value of COPY's text format (escaped by sbuf_copy_text). */
static void rb_text(struct sbuf *b, const char *s, size_t n) { sbuf_copy_text(b, s, n); }

/* ---- Stream ids ---------------------------------------------------------------- */

struct sid {
    int64_t ms, seq;
};

/* "ms-seq" into *id; parts past INT64_MAX are clamped (never in practice).
 * Returns 0, or -1 when it is not a stream id. */
static int sid_parse(const char *s, struct sid *id)
{
    char *end;
    errno = 0;
    unsigned long long ms = strtoull(s, &end, 10);
    if (end == s || *end != '-')
        return -1;
    const char *q = end + 1;
    unsigned long long seq = strtoull(q, &end, 10);
    if (end == q || *end != '\0')
        return -1;
    id->ms = ms > INT64_MAX ? INT64_MAX : (int64_t)ms;
    id->seq = seq > INT64_MAX ? INT64_MAX : (int64_t)seq;
    return 0;
}

static int sid_less(struct sid a, struct sid b) { return a.ms < b.ms || (a.ms == b.ms && a.seq < b.seq); }

/* ---- Redis ---------------------------------------------------------------------- */

struct run {
    PGconn *pg;
    struct rsync *rc;
    const struct recon_opts *o;
    struct recon_result *r;
    char sha_stream[41], sha_wallets[41], sha_board[41];
    /* Per shard: the last id before the scan, the first entry the rooms
     * group still needed then, and the largest cut read since. */
    struct sid *cut0, *rooms_first, *maxcut;
    /* The wallets seen, per shard. */
    char ***uids;
    size_t *nuids, *capuids;
    size_t keys;
    struct sbuf heads, wallet, cut0_rows, backlog, rooms, board, wm, lag, statement;
    int64_t st_from_line;
};

static int fail(struct run *u, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(struct run *u, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(u->r->err, sizeof u->r->err, fmt, ap);
    va_end(ap);
    return -1;
}

static redisReply *cmd(struct run *u, int argc, const char **argv, const size_t *len)
{
    redisReply *rep = rsync_command(u->rc, argc, argv, len);
    if (!rep) {
        fail(u, "%s", u->rc->err);
        return NULL;
    }
    if (rep->type == REDIS_REPLY_ERROR) {
        fail(u, "redis: %.400s", rep->str);
        freeReplyObject(rep);
        return NULL;
    }
    return rep;
}

/* On every master (a cluster's EVALSHA goes to the one of its key). */
static int load_script(struct run *u, const char *src, char sha[41])
{
    const char *argv[] = {"SCRIPT", "LOAD", src};
    size_t len[] = {6, 4, strlen(src)};
    for (int m = 0; m < rsync_masters(u->rc); m++) {
        redisReply *rep = rsync_command_master(u->rc, m, 3, argv, len);
        if (!rep)
            return fail(u, "%s", u->rc->err);
        int ok = rep->type == REDIS_REPLY_STRING && rep->len == 40;
        if (ok)
            memcpy(sha, rep->str, 41);
        freeReplyObject(rep);
        if (!ok)
            return fail(u, "redis: SCRIPT LOAD answered no sha");
    }
    return 0;
}

/* EVALSHA sha with nkeys keys then the arguments (argv[0..n)). */
static redisReply *evalsha(struct run *u, const char *sha, int nkeys, int n, const char **argv, const size_t *len)
{
    const char **a = malloc(sizeof *a * (size_t)(n + 3));
    size_t *l = malloc(sizeof *l * (size_t)(n + 3));
    char nk[16];
    if (!a || !l) {
        free(a), free(l);
        fail(u, "out of memory");
        return NULL;
    }
    snprintf(nk, sizeof nk, "%d", nkeys);
    a[0] = "EVALSHA", l[0] = 7;
    a[1] = sha, l[1] = 40;
    a[2] = nk, l[2] = strlen(nk);
    for (int i = 0; i < n; i++)
        a[3 + i] = argv[i], l[3 + i] = len[i];
    redisReply *rep = cmd(u, n + 3, a, l);
    free(a), free(l);
    return rep;
}

static const char *str_of(const redisReply *r) { return r && r->type == REDIS_REPLY_STRING ? r->str : ""; }

/* Step 2: every shard's last id and its groups, before the scan. */
static int read_shards(struct run *u)
{
    for (int s = 0; s < u->o->shards; s++) {
        char key[OUTBOX_KEY_MAX];
        outbox_key(s, key, sizeof key);
        const char *argv[] = {key, "info"};
        size_t len[] = {strlen(key), 4};
        redisReply *rep = evalsha(u, u->sha_stream, 1, 2, argv, len);
        if (!rep)
            return -1;
        if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 || sid_parse(str_of(rep->element[0]), &u->cut0[s])) {
            freeReplyObject(rep);
            return fail(u, "redis: shard %d: unexpected answer of recon_stream", s);
        }
        u->maxcut[s] = u->cut0[s];
        /* No rooms group yet: it has applied nothing. */
        u->rooms_first[s] = (struct sid){0, 0};
        const redisReply *gs = rep->element[1];
        for (size_t i = 0; gs->type == REDIS_REPLY_ARRAY && i < gs->elements; i++) {
            const redisReply *g = gs->element[i];
            if (g->type != REDIS_REPLY_ARRAY || g->elements != 6)
                continue;
            const char *name = str_of(g->element[0]), *last = str_of(g->element[2]), *oldest = str_of(g->element[4]);
            long long pending = g->element[1]->integer, lagv = g->element[3]->integer, idle = g->element[5]->integer;
            rb_fmt(&u->lag, "%d\t", s);
            rb_text(&u->lag, name, strlen(name));
            if (lagv >= 0)
                rb_fmt(&u->lag, "\t%lld\t%lld\t", lagv, pending);
            else
                rb_fmt(&u->lag, "\t\\N\t%lld\t", pending);
            if (oldest[0])
                rb_text(&u->lag, oldest, strlen(oldest));
            else
                sbuf_put(&u->lag, "\\N", 2);
            if (idle >= 0)
                rb_fmt(&u->lag, "\t%lld\t", idle);
            else
                sbuf_put(&u->lag, "\t\\N\t", 4);
            rb_text(&u->lag, last, strlen(last));
            sbuf_put(&u->lag, "\n", 1);
            if (strcmp(name, OUTBOX_GROUP_ROOMS) == 0) {
                /* The first entry the group still needs: its oldest
                 * pending one, else the one after its last-delivered. */
                struct sid first, p;
                if (sid_parse(last, &first) == 0)
                    first.seq = first.seq < INT64_MAX ? first.seq + 1 : first.seq;
                else
                    first = (struct sid){0, 0};
                if (pending > 0 && sid_parse(oldest, &p) == 0 && sid_less(p, first))
                    first = p;
                u->rooms_first[s] = first;
            }
        }
        freeReplyObject(rep);
        rb_fmt(&u->cut0_rows, "%d\t%" PRId64 "\t%" PRId64 "\t%" PRId64 "\t%" PRId64 "\n", s, u->cut0[s].ms,
               u->cut0[s].seq, u->rooms_first[s].ms, u->rooms_first[s].seq);
    }
    return 0;
}

/* SCAN MATCH pattern on every master: calls each(u, key, len) per key. */
static int scan(struct run *u, const char *pattern, int (*each)(struct run *u, const char *key, size_t len))
{
    for (int m = 0; m < rsync_masters(u->rc); m++) {
        char cursor[32] = "0";
        do {
            const char *argv[] = {"SCAN", cursor, "MATCH", pattern, "COUNT", "1000"};
            size_t len[] = {4, strlen(cursor), 5, strlen(pattern), 5, 4};
            redisReply *rep = rsync_command_master(u->rc, m, 6, argv, len);
            if (!rep)
                return fail(u, "%s", u->rc->err);
            if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 || rep->element[1]->type != REDIS_REPLY_ARRAY) {
                freeReplyObject(rep);
                return fail(u, "redis: unexpected SCAN answer");
            }
            snprintf(cursor, sizeof cursor, "%s", str_of(rep->element[0]));
            for (size_t i = 0; i < rep->element[1]->elements; i++) {
                const redisReply *k = rep->element[1]->element[i];
                if (k->type == REDIS_REPLY_STRING && each(u, k->str, k->len) < 0) {
                    freeReplyObject(rep);
                    return -1;
                }
            }
            freeReplyObject(rep);
        } while (strcmp(cursor, "0") != 0);
    }
    return 0;
}

/* A wallet key tc:{w:N}:bal:<uid> seen by the scan. */
static int each_wallet(struct run *u, const char *key, size_t len)
{
    int shard = -1, end = 0;
    if (sscanf(key, "tc:{w:%d}:bal:%n", &shard, &end) != 1 || end == 0 || shard < 0 || shard >= u->o->shards ||
        (size_t)end >= len)
        return 0;
    if (++u->keys > RECON_KEYS_MAX)
        return fail(u, "more than %d wallets and rooms", RECON_KEYS_MAX);
    if (u->nuids[shard] == u->capuids[shard]) {
        size_t cap = u->capuids[shard] ? u->capuids[shard] * 2 : 256;
        char **p = realloc(u->uids[shard], cap * sizeof *p);
        if (!p)
            return fail(u, "out of memory");
        u->uids[shard] = p;
        u->capuids[shard] = cap;
    }
    char *uid = strndup(key + end, len - (size_t)end);
    if (!uid)
        return fail(u, "out of memory");
    u->uids[shard][u->nuids[shard]++] = uid;
    return 0;
}

/* Step 3: the wallets of each shard in batches, each with its cut. */
static int read_wallets(struct run *u)
{
    if (scan(u, "tc:{w:*}:bal:*", each_wallet) < 0)
        return -1;
    const char **argv = malloc(sizeof *argv * (RECON_BATCH + 1));
    size_t *len = malloc(sizeof *len * (RECON_BATCH + 1));
    char(*keys)[OUTBOX_KEY_MAX + 256] = malloc(sizeof *keys * (RECON_BATCH + 1));
    if (!argv || !len || !keys) {
        free(argv), free(len), free(keys);
        return fail(u, "out of memory");
    }
    int rc = 0;
    for (int s = 0; s < u->o->shards && rc == 0; s++) {
        for (size_t at = 0; at < u->nuids[s] && rc == 0; at += RECON_BATCH) {
            size_t n = u->nuids[s] - at < RECON_BATCH ? u->nuids[s] - at : RECON_BATCH;
            outbox_key(s, keys[0], sizeof keys[0]);
            for (size_t i = 0; i < n; i++)
                snprintf(keys[i + 1], sizeof keys[0], "tc:{w:%d}:bal:%s", s, u->uids[s][at + i]);
            for (size_t i = 0; i <= n; i++)
                argv[i] = keys[i], len[i] = strlen(keys[i]);
            redisReply *rep = evalsha(u, u->sha_wallets, (int)n + 1, (int)n + 1, argv, len);
            struct sid cut;
            if (!rep) {
                rc = -1;
                break;
            }
            if (rep->type != REDIS_REPLY_ARRAY || rep->elements != n + 1 || sid_parse(str_of(rep->element[0]), &cut)) {
                freeReplyObject(rep);
                rc = fail(u, "redis: shard %d: unexpected answer of recon_wallets", s);
                break;
            }
            if (sid_less(u->maxcut[s], cut))
                u->maxcut[s] = cut;
            for (size_t i = 0; i < n; i++) {
                const redisReply *b = rep->element[i + 1];
                if (b->type != REDIS_REPLY_STRING)
                    continue; /* gone since the scan: compared as 0 by the SQL side */
                char *end;
                long long bal = strtoll(b->str, &end, 10);
                if (*end != '\0') {
                    rc = fail(u, "redis: wallet %.128s of shard %d holds %.40s, not an integer", u->uids[s][at + i],
                              s, b->str);
                    break;
                }
                rb_text(&u->wallet, u->uids[s][at + i], strlen(u->uids[s][at + i]));
                rb_fmt(&u->wallet, "\t%d\t%lld\t%" PRId64 "\t%" PRId64 "\n", s, bal, cut.ms, cut.seq);
            }
            freeReplyObject(rep);
        }
    }
    free(argv), free(len), free(keys);
    return rc;
}

/* A room's watermark key tc:{r:ROOM}:wm: its board and watermarks. */
static int each_room(struct run *u, const char *key, size_t len)
{
    if (len < 11 || strncmp(key, "tc:{r:", 6) != 0 || strcmp(key + len - 4, "}:wm") != 0)
        return 0;
    if (++u->keys > RECON_KEYS_MAX)
        return fail(u, "more than %d wallets and rooms", RECON_KEYS_MAX);
    const char *room = key + 6;
    size_t rlen = len - 10;
    char board[512];
    if (rlen > 200)
        return 0;
    snprintf(board, sizeof board, "tc:{r:%.*s}:board:all", (int)rlen, room);
    const char *argv[] = {board, key};
    size_t lens[] = {strlen(board), len};
    redisReply *rep = evalsha(u, u->sha_board, 2, 2, argv, lens);
    if (!rep)
        return -1;
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 || rep->element[0]->type != REDIS_REPLY_ARRAY ||
        rep->element[1]->type != REDIS_REPLY_ARRAY) {
        freeReplyObject(rep);
        return fail(u, "redis: room %.*s: unexpected answer of recon_board", (int)rlen, room);
    }
    rb_text(&u->rooms, room, rlen);
    sbuf_put(&u->rooms, "\n", 1);
    const redisReply *z = rep->element[0], *w = rep->element[1];
    for (size_t i = 0; i + 1 < z->elements; i += 2) {
        /* Scores are integer coins written with %d (room_apply.lua). */
        double score = strtod(str_of(z->element[i + 1]), NULL);
        rb_text(&u->board, room, rlen);
        sbuf_put(&u->board, "\t", 1);
        rb_text(&u->board, str_of(z->element[i]), strlen(str_of(z->element[i])));
        rb_fmt(&u->board, "\t%lld\n", (long long)score);
    }
    for (size_t i = 0; i + 1 < w->elements; i += 2) {
        int shard = atoi(str_of(w->element[i]));
        struct sid id;
        if (shard < 0 || shard >= u->o->shards || sid_parse(str_of(w->element[i + 1]), &id))
            continue;
        if (sid_less(u->maxcut[shard], id))
            u->maxcut[shard] = id;
        rb_text(&u->wm, room, rlen);
        rb_fmt(&u->wm, "\t%d\t%" PRId64 "\t%" PRId64 "\n", shard, id.ms, id.seq);
    }
    freeReplyObject(rep);
    return 0;
}

/* Step 5: per shard, the ledger group's unacknowledged entries up to the
 * largest cut; each one decoded to its kind, user, room and amount. */
static int read_backlog(struct run *u)
{
    for (int s = 0; s < u->o->shards; s++) {
        char key[OUTBOX_KEY_MAX], end[48], max[16];
        outbox_key(s, key, sizeof key);
        snprintf(end, sizeof end, "%" PRId64 "-%" PRId64, u->maxcut[s].ms, u->maxcut[s].seq);
        snprintf(max, sizeof max, "%d", RECON_BACKLOG_MAX);
        const char *argv[] = {key, "backlog", OUTBOX_GROUP_LEDGER, end, max};
        size_t len[] = {strlen(key), 7, strlen(OUTBOX_GROUP_LEDGER), strlen(end), strlen(max)};
        redisReply *rep = evalsha(u, u->sha_stream, 1, 5, argv, len);
        if (!rep)
            return -1;
        const char *status = rep->type == REDIS_REPLY_ARRAY && rep->elements >= 1 ? str_of(rep->element[0]) : "";
        if (strcmp(status, "too_large") == 0) {
            freeReplyObject(rep);
            return fail(u, "backlog too large: shard %d has more than %d entries the ledger has not acknowledged", s,
                        RECON_BACKLOG_MAX);
        }
        if (strcmp(status, "nogroup") == 0) {
            freeReplyObject(rep);
            return fail(u, "shard %d: the stream has no ledger group (no tipcastd has read it yet)", s);
        }
        if (strcmp(status, "ok") != 0 || rep->elements != 2 || rep->element[1]->type != REDIS_REPLY_ARRAY) {
            freeReplyObject(rep);
            return fail(u, "redis: shard %d: unexpected answer of recon_stream backlog", s);
        }
        const redisReply *es = rep->element[1];
        for (size_t i = 0; i < es->elements; i++) {
            const redisReply *e = es->element[i];
            struct sid id;
            if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 || sid_parse(str_of(e->element[0]), &id) ||
                e->element[1]->type != REDIS_REPLY_ARRAY)
                continue;
            const char *k = "", *uid = "", *room = "", *amount = "";
            const redisReply *f = e->element[1];
            for (size_t j = 0; j + 1 < f->elements; j += 2) {
                const char *name = str_of(f->element[j]), *v = str_of(f->element[j + 1]);
                if (strcmp(name, "k") == 0)
                    k = v;
                else if (strcmp(name, "u") == 0)
                    uid = v;
                else if (strcmp(name, "r") == 0)
                    room = v;
                else if (strcmp(name, "a") == 0)
                    amount = v;
            }
            /* A campaign's pledge debits the wallet like a tip and its
             * refund credits it like a credit; neither is a room's order,
             * so they never count on a board (r is the campaign, not a
             * room). */
            if (strcmp(k, "pledge") == 0) {
                k = "tip";
                room = "";
            } else if (strcmp(k, "crefund") == 0) {
                k = "credit";
                room = "";
            }
            char *endp;
            long long a = strtoll(amount, &endp, 10);
            if (amount[0] == '\0' || *endp != '\0' || a <= 0)
                k = "bad"; /* set aside by the ledger (outbox_rejects): listed there */
            rb_fmt(&u->backlog, "%d-%s\t%d\t%" PRId64 "\t%" PRId64 "\t", s, str_of(e->element[0]), s, id.ms, id.seq);
            rb_text(&u->backlog, k, strlen(k));
            sbuf_put(&u->backlog, "\t", 1);
            rb_text(&u->backlog, uid, strlen(uid));
            sbuf_put(&u->backlog, "\t", 1);
            rb_text(&u->backlog, room, strlen(room));
            rb_fmt(&u->backlog, "\t%lld\n", a > 0 ? a : 0);
        }
        freeReplyObject(rep);
    }
    return 0;
}

/* ---- The statement ------------------------------------------------------------- */

static int id_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '.' ||
           c == ':' || c == '-';
}

/* "payment_id,amount,time" lines (a header line is skipped; blank lines
 * too) into rc_statement rows. amount: the currency's minor units. */
static int read_statement(struct run *u, const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return fail(u, "statement %s: %s", path, strerror(errno));
    char line[1024];
    int no = 0, rows = 0, rc = 0;
    while (fgets(line, sizeof line, f)) {
        no++;
        size_t n = strlen(line);
        if (n == sizeof line - 1 && line[n - 1] != '\n') {
            rc = fail(u, "statement %s:%d: line longer than %zu bytes", path, no, sizeof line - 2);
            break;
        }
        while (n && (line[n - 1] == '\n' || line[n - 1] == '\r' || line[n - 1] == ' '))
            line[--n] = '\0';
        if (n == 0)
            continue;
        char *c1 = strchr(line, ','), *c2 = c1 ? strchr(c1 + 1, ',') : NULL;
        if (!c1 || !c2 || strchr(c2 + 1, ',')) {
            rc = fail(u, "statement %s:%d: want payment_id,amount,time", path, no);
            break;
        }
        *c1 = *c2 = '\0';
        const char *pid = line, *amount = c1 + 1, *at = c2 + 1;
        char *end;
        errno = 0;
        long long a = strtoll(amount, &end, 10);
        if (rows == 0 && no == 1 && (end == amount || *end != '\0'))
            continue; /* the header */
        size_t plen = strlen(pid);
        int ok_id = plen >= 1 && plen <= 128;
        for (size_t i = 0; ok_id && i < plen; i++)
            ok_id = id_char(pid[i]);
        if (!ok_id) {
            rc = fail(u, "statement %s:%d: bad payment id", path, no);
            break;
        }
        if (end == amount || *end != '\0' || errno || a <= 0 || a > (1LL << 53)) {
            rc = fail(u, "statement %s:%d: amount must be a positive integer of minor units", path, no);
            break;
        }
        if (at[0] == '\0' || strpbrk(at, "\t\\")) {
            rc = fail(u, "statement %s:%d: bad time", path, no);
            break;
        }
        rb_fmt(&u->statement, "%d\t", no);
        rb_text(&u->statement, pid, plen);
        rb_fmt(&u->statement, "\t%lld\t", a);
        rb_text(&u->statement, at, strlen(at));
        sbuf_put(&u->statement, "\n", 1);
        rows++;
    }
    fclose(f);
    return rc;
}

/* ---- PostgreSQL ---------------------------------------------------------------- */

static int pg_ok(struct run *u, PGresult *res, const char *what)
{
    ExecStatusType st = PQresultStatus(res);
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
        PQclear(res);
        return 0;
    }
    fail(u, "postgresql: %s: %.400s", what, PQresultErrorMessage(res));
    PQclear(res);
    return -1;
}

static int pg_copy(struct run *u, const char *table, const struct sbuf *b)
{
    char sql[128];
    snprintf(sql, sizeof sql, "COPY %s FROM STDIN", table);
    PGresult *res = PQexec(u->pg, sql);
    if (PQresultStatus(res) != PGRES_COPY_IN)
        return pg_ok(u, res, table);
    PQclear(res);
    if ((b->len && PQputCopyData(u->pg, b->p, (int)b->len) != 1) || PQputCopyEnd(u->pg, NULL) != 1)
        return fail(u, "postgresql: COPY %s: %s", table, PQerrorMessage(u->pg));
    return pg_ok(u, PQgetResult(u->pg), table);
}

/* Step 1: the chain heads, before Redis is read. */
static int read_heads(struct run *u)
{
    PGresult *res = PQexec(u->pg, "SELECT chain, seq FROM ledger_chains");
    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        return pg_ok(u, res, "ledger_chains");
    for (int i = 0; i < PQntuples(res); i++)
        rb_fmt(&u->heads, "%s\t%s\n", PQgetvalue(res, i, 0), PQgetvalue(res, i, 1));
    PQclear(res);
    return 0;
}

static void rollback(struct run *u)
{
    if (PQtransactionStatus(u->pg) != PQTRANS_IDLE)
        PQclear(PQexec(u->pg, "ROLLBACK"));
}

/* Steps 6 and 7: the snapshot, the checks, the report. */
static int check(struct run *u, const char *started_at)
{
    if (pg_ok(u, PQexec(u->pg, "BEGIN ISOLATION LEVEL REPEATABLE READ"), "BEGIN") < 0)
        return -1;
    if (pg_ok(u, PQexec(u->pg, "SELECT tipcast_reconcile_staging()"), "staging") < 0 ||
        pg_copy(u, "rc_heads", &u->heads) < 0 || pg_copy(u, "rc_wallet", &u->wallet) < 0 ||
        pg_copy(u, "rc_cut0", &u->cut0_rows) < 0 || pg_copy(u, "rc_backlog", &u->backlog) < 0 ||
        pg_copy(u, "rc_rooms", &u->rooms) < 0 || pg_copy(u, "rc_board", &u->board) < 0 ||
        pg_copy(u, "rc_wm", &u->wm) < 0 || pg_copy(u, "rc_lag", &u->lag) < 0 ||
        pg_copy(u, "rc_statement", &u->statement) < 0) {
        rollback(u);
        return -1;
    }
    char idle[32];
    snprintf(idle, sizeof idle, "%" PRId64, u->o->idle_ms);
    const char *params[] = {idle, u->o->statement ? "true" : "false"};
    PGresult *res = PQexecParams(
        u->pg,
        "SELECT tipcast_reconcile_check($1::bigint, $2::boolean, (SELECT min(at) FROM rc_statement),"
        " (SELECT max(at) FROM rc_statement))::text",
        2, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        pg_ok(u, res, "tipcast_reconcile_check");
        rollback(u);
        return -1;
    }
    json_error_t jerr;
    json_t *report = json_loads(PQgetvalue(res, 0, 0), 0, &jerr);
    PQclear(res);
    rollback(u); /* nothing was written but the temporary tables */
    if (!report)
        return fail(u, "report: %s", jerr.text);

    json_t *findings = json_object_get(report, "findings");
    u->r->findings = (int)json_array_size(findings);
    u->r->coins_off = 0;
    for (size_t i = 0; i < json_array_size(findings); i++)
        u->r->coins_off += json_integer_value(json_object_get(json_array_get(findings, i), "off"));

    /* The cut, as the report states it. */
    json_t *cut = json_object(), *shards = json_array();
    for (int s = 0; s < u->o->shards; s++) {
        char a[48], b[48], c[48];
        snprintf(a, sizeof a, "%" PRId64 "-%" PRId64, u->cut0[s].ms, u->cut0[s].seq);
        snprintf(b, sizeof b, "%" PRId64 "-%" PRId64, u->maxcut[s].ms, u->maxcut[s].seq);
        snprintf(c, sizeof c, "%" PRId64 "-%" PRId64, u->rooms_first[s].ms, u->rooms_first[s].seq);
        json_array_append_new(shards, json_pack("{s:i, s:s, s:s, s:s}", "shard", s, "first_cut", a, "last_cut", b,
                                                "rooms_needed", c));
    }
    json_object_set_new(cut, "shards", shards);
    json_object_set_new(cut, "chain_heads", json_string(u->heads.p ? u->heads.p : ""));
    json_object_set_new(report, "cut", json_incref(cut));
    json_object_set_new(report, "started_at", json_string(started_at));
    json_object_set_new(report, "source", json_string(u->o->source));
    json_object_set_new(report, "ok", json_boolean(u->r->findings == 0));
    json_object_set_new(report, "coins_off", json_integer(u->r->coins_off));
    if (u->o->statement)
        json_object_set_new(report, "statement", json_string(u->o->statement));
    char *text = json_dumps(report, JSON_COMPACT);
    char *cut_text = json_dumps(cut, JSON_COMPACT);
    json_decref(report);
    json_decref(cut);
    if (!text || !cut_text) {
        free(text), free(cut_text);
        return fail(u, "out of memory");
    }
    u->r->report = text;

    if (u->o->store) {
        const char *p[] = {u->o->source, u->o->node, started_at, cut_text, text, u->o->webhooks ? "true" : "false"};
        res = PQexecParams(u->pg,
                           "SELECT tipcast_reconcile_store($1, $2, $3::timestamptz, $4::jsonb, $5::jsonb, $6::boolean)",
                           6, NULL, p, NULL, NULL, 0);
        if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
            free(cut_text);
            return pg_ok(u, res, "tipcast_reconcile_store");
        }
        u->r->report_id = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
        PQclear(res);
    }
    free(cut_text);
    return 0;
}

int recon_run(PGconn *pg, struct rsync *rc, const struct recon_opts *o, struct recon_result *r)
{
    memset(r, 0, sizeof *r);
    struct run u = {.pg = pg, .rc = rc, .o = o, .r = r};
    int n = o->shards;
    u.cut0 = calloc((size_t)n, sizeof *u.cut0);
    u.rooms_first = calloc((size_t)n, sizeof *u.rooms_first);
    u.maxcut = calloc((size_t)n, sizeof *u.maxcut);
    u.uids = calloc((size_t)n, sizeof *u.uids);
    u.nuids = calloc((size_t)n, sizeof *u.nuids);
    u.capuids = calloc((size_t)n, sizeof *u.capuids);

    char started_at[64];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t sl = strftime(started_at, sizeof started_at, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(started_at + sl, sizeof started_at - sl, ".%06ldZ", ts.tv_nsec / 1000);

    int ok = u.cut0 && u.rooms_first && u.maxcut && u.uids && u.nuids && u.capuids ? 0 : fail(&u, "out of memory");
    if (ok == 0 && o->statement)
        ok = read_statement(&u, o->statement);
    if (ok == 0)
        ok = load_script(&u, lua_recon_stream, u.sha_stream);
    if (ok == 0)
        ok = load_script(&u, lua_recon_wallets, u.sha_wallets);
    if (ok == 0)
        ok = load_script(&u, lua_recon_board, u.sha_board);
    if (ok == 0)
        ok = read_heads(&u);
    if (ok == 0)
        ok = read_shards(&u);
    if (ok == 0)
        ok = read_wallets(&u);
    if (ok == 0)
        ok = scan(&u, RECON_ROOM_WM_MATCH, each_room);
    if (ok == 0)
        ok = read_backlog(&u);
    struct sbuf *bufs[] = {&u.heads, &u.wallet, &u.cut0_rows, &u.backlog, &u.rooms,
                           &u.board, &u.wm,     &u.lag,       &u.statement};
    for (size_t i = 0; ok == 0 && i < sizeof bufs / sizeof bufs[0]; i++)
        if (bufs[i]->oom)
            ok = fail(&u, "out of memory");
    if (ok == 0)
        ok = check(&u, started_at);

    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        sbuf_free(bufs[i]);
    for (int s = 0; u.uids && s < n; s++) {
        for (size_t i = 0; i < u.nuids[s]; i++)
            free(u.uids[s][i]);
        free(u.uids[s]);
    }
    free(u.cut0), free(u.rooms_first), free(u.maxcut), free(u.uids), free(u.nuids), free(u.capuids);
    if (ok < 0) {
        free(r->report);
        r->report = NULL;
        return RECON_ERROR;
    }
    return r->findings ? RECON_MISMATCH : RECON_CLEAN;
}

void recon_result_free(struct recon_result *r)
{
    free(r->report);
    r->report = NULL;
}

static void print_coins(FILE *out, const char *name, const json_t *v)
{
    if (json_is_integer(v))
        fprintf(out, " %s=%" JSON_INTEGER_FORMAT, name, json_integer_value(v));
    else
        fprintf(out, " %s=-", name);
}

void recon_print_text(const char *report_json, FILE *out)
{
    json_t *rep = json_loads(report_json, 0, NULL);
    if (!rep)
        return;
    json_t *fs = json_object_get(rep, "findings");
    for (size_t i = 0; i < json_array_size(fs); i++) {
        json_t *f = json_array_get(fs, i);
        fprintf(out, "MISMATCH %s %s %s", json_string_value(json_object_get(f, "check")),
                json_string_value(json_object_get(f, "kind")), json_string_value(json_object_get(f, "subject")));
        print_coins(out, "expected", json_object_get(f, "expected"));
        print_coins(out, "actual", json_object_get(f, "actual"));
        print_coins(out, "off", json_object_get(f, "off"));
        char *d = json_dumps(json_object_get(f, "detail"), JSON_COMPACT | JSON_SORT_KEYS);
        fprintf(out, " %s\n", d ? d : "{}");
        free(d);
    }
    fprintf(out, "%s: %zu findings, %" JSON_INTEGER_FORMAT " coins off; %" JSON_INTEGER_FORMAT " wallets, %"
                 JSON_INTEGER_FORMAT " rooms, %" JSON_INTEGER_FORMAT " backlog entries, %" JSON_INTEGER_FORMAT
                 " statement lines\n",
            json_array_size(fs) ? "MISMATCH" : "CLEAN", json_array_size(fs),
            json_integer_value(json_object_get(rep, "coins_off")), json_integer_value(json_object_get(rep, "wallets")),
            json_integer_value(json_object_get(rep, "rooms")), json_integer_value(json_object_get(rep, "backlog")),
            json_integer_value(json_object_get(rep, "statement_lines")));
    json_decref(rep);
}
