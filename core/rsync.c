/* rsync.c - the blocking Redis client (see rsync.h). */
#include "rsync.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "hash.h"
#include "redis.h"

static redisContext *dial(struct rsync *r, const char *host, int port)
{
    struct timeval tv = {r->timeout_s, 0};
    redisContext *c = redisConnectWithTimeout(host, port, tv);
    if (!c || c->err) {
        snprintf(r->err, sizeof r->err, "redis %.255s:%d: %.200s", host, port, c ? c->errstr : "out of memory");
        if (c)
            redisFree(c);
        return NULL;
    }
    redisSetTimeout(c, tv);
    return c;
}

static void drop_all(struct rsync *r)
{
    for (int i = 0; i < r->nconn; i++)
        if (r->conn[i])
            redisFree(r->conn[i]);
    r->nconn = 0;
}

/* Reads the map from `via` and connects to every master. */
static int load_map(struct rsync *r, redisContext *via, const struct slots_node *seed)
{
    redisReply *rep = redisCommand(via, "CLUSTER SLOTS");
    char err[160];
    struct slots_map m;
    if (!rep || slots_map_parse(&m, rep, seed, err, sizeof err) < 0) {
        snprintf(r->err, sizeof r->err, "redis cluster %.255s:%d: CLUSTER SLOTS: %.200s", seed->host, seed->port,
                 rep ? (rep->type == REDIS_REPLY_ERROR ? rep->str : err) : via->errstr);
        if (rep)
            freeReplyObject(rep);
        return -1;
    }
    freeReplyObject(rep);
    drop_all(r);
    r->map = m;
    for (int i = 0; i < m.nmasters; i++) {
        if (!(r->conn[i] = dial(r, m.masters[i].host, m.masters[i].port))) {
            r->nconn = i;
            return -1;
        }
        r->nconn = i + 1;
    }
    if (slots_unserved(&m)) {
        snprintf(r->err, sizeof r->err, "redis cluster: %u slots have no master", slots_unserved(&m));
        return -1;
    }
    return 0;
}

int rsync_connect(struct rsync *r, const char *host, int port, const char *seeds, int timeout_s)
{
    memset(r, 0, sizeof *r);
    r->timeout_s = timeout_s;
    if (!seeds || !*seeds) {
        if (!(r->conn[0] = dial(r, host, port)))
            return -1;
        r->nconn = 1;
        return 0;
    }
    r->cluster = 1;
    for (const char *p = seeds; *p;) {
        size_t len = strcspn(p, ",");
        const char *colon = memrchr(p, ':', len);
        struct slots_node seed = {.port = 0};
        if (colon && (size_t)(colon - p) <= SLOTS_HOST_MAX) {
            memcpy(seed.host, p, (size_t)(colon - p));
            seed.port = atoi(colon + 1);
        }
        redisContext *c = seed.port > 0 ? dial(r, seed.host, seed.port) : NULL;
        int ok = c && load_map(r, c, &seed) == 0;
        if (c)
            redisFree(c);
        if (ok)
            return 0;
        p += len;
        if (*p == ',')
            p++;
    }
    return -1;
}

void rsync_close(struct rsync *r) { drop_all(r); }

int rsync_masters(const struct rsync *r) { return r->nconn; }

static redisReply *on(struct rsync *r, redisContext *c, int asking, int argc, const char **argv, const size_t *len)
{
    if (asking) {
        redisReply *a = redisCommand(c, "ASKING");
        if (a)
            freeReplyObject(a);
    }
    redisReply *rep = redisCommandArgv(c, argc, argv, len);
    if (!rep)
        snprintf(r->err, sizeof r->err, "redis: %s", c->errstr[0] ? c->errstr : "connection lost");
    return rep;
}

redisReply *rsync_command_master(struct rsync *r, int master, int argc, const char **argv, const size_t *len)
{
    if (master < 0 || master >= r->nconn) {
        snprintf(r->err, sizeof r->err, "redis: no master %d", master);
        return NULL;
    }
    return on(r, r->conn[master], 0, argc, argv, len);
}

redisReply *rsync_command(struct rsync *r, int argc, const char **argv, const size_t *len)
{
    if (!r->cluster)
        return rsync_command_master(r, 0, argc, argv, len);
    int key = redis_key_index(argc, argv, len);
    unsigned slot = key >= 0 ? (unsigned)hash_keyslot(argv[key], len[key]) : 0;
    redisContext *c = r->map.owner[slot] < r->nconn ? r->conn[r->map.owner[slot]] : NULL;
    redisContext *temp = NULL;
    int asking = 0;
    for (int i = 0; c && i <= RSYNC_REDIRECTS_MAX; i++) {
        redisReply *rep = on(r, c, asking, argc, argv, len);
        if (temp) {
            redisFree(temp);
            temp = NULL;
        }
        unsigned s;
        struct slots_node to;
        enum slots_redirect k =
            rep && rep->type == REDIS_REPLY_ERROR ? slots_redirect_parse(rep->str, rep->len, &s, &to) : SLOTS_NOT_REDIRECT;
        if (k == SLOTS_NOT_REDIRECT)
            return rep;
        freeReplyObject(rep);
        if (!to.host[0])
            snprintf(to.host, sizeof to.host, "127.0.0.1");
        /* MOVED: the map is read again from the node it names; ASK: that
         * node, once. */
        redisContext *n = dial(r, to.host, to.port);
        if (!n)
            return NULL;
        if (k == SLOTS_MOVED) {
            int rc = load_map(r, n, &to);
            redisFree(n);
            if (rc < 0)
                return NULL;
            c = r->map.owner[slot] < r->nconn ? r->conn[r->map.owner[slot]] : NULL;
            asking = 0;
        } else {
            c = temp = n;
            asking = 1;
        }
    }
    if (temp)
        redisFree(temp);
    snprintf(r->err, sizeof r->err, "redis cluster: slot %u: %s", slot, c ? "too many redirections" : "no master");
    return NULL;
}
