/* redis.c - one Redis or a cluster, behind one set of calls (see redis.h). */
#include "redis.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int redis_init(struct redis *r, uv_loop_t *loop, const char *host, int port, const char *seeds,
               const struct rlink_hooks *hooks, char *err, size_t errlen)
{
    memset(r, 0, sizeof *r);
    if (seeds && *seeds) {
        r->cluster = 1;
        snprintf(r->where, sizeof r->where, "cluster %.280s", seeds);
        return rcluster_init(&r->many, loop, seeds, hooks, err, errlen);
    }
    snprintf(r->where, sizeof r->where, "%.280s:%d", host, port);
    rlink_init(&r->one, loop, host, port, hooks);
    return 0;
}

int redis_seeds_check(const char *seeds, char *err, size_t errlen)
{
    static struct rcluster scratch; /* only its seed list is filled */
    char why[160];
    if (!seeds || !*seeds || rcluster_init(&scratch, NULL, seeds, NULL, why, sizeof why) == 0)
        return 0;
    snprintf(err, errlen, "redis-cluster: %s", why);
    return -1;
}

void redis_set_wait(struct redis *r, int replicas, int timeout_ms)
{
    if (r->cluster)
        rcluster_set_wait(&r->many, replicas, timeout_ms);
    else
        rlink_set_wait(&r->one, replicas, timeout_ms);
}

void redis_script_add(struct redis *r, struct rlink_script *s)
{
    if (r->cluster)
        rcluster_script_add(&r->many, s);
    else
        rlink_script_add(&r->one, s);
}

void redis_start(struct redis *r)
{
    if (r->cluster)
        rcluster_start(&r->many);
    else
        rlink_start(&r->one);
}

void redis_stop(struct redis *r)
{
    if (r->cluster)
        rcluster_stop(&r->many);
    else
        rlink_stop(&r->one);
}

void redis_free(struct redis *r)
{
    if (r->cluster)
        rcluster_free(&r->many);
}

int redis_cmd_ready(const struct redis *r)
{
    return r->cluster ? rcluster_ready(&r->many) : rlink_cmd_ready(&r->one);
}

int redis_sub_ready(const struct redis *r) { return r->cluster ? rcluster_up(&r->many, -1) : rlink_sub_ready(&r->one); }

int redis_ready(const struct redis *r) { return r->cluster ? rcluster_up(&r->many, -2) : rlink_ready(&r->one); }

int redis_up(const struct redis *r, int link) { return r->cluster ? rcluster_up(&r->many, link) : rlink_up(&r->one, link); }

int redis_open(struct redis *r, const char *name)
{
    return r->cluster ? rcluster_open(&r->many, name) : rlink_open(&r->one, name);
}

int redis_masters(const struct redis *r) { return r->cluster ? rcluster_masters(&r->many) : 1; }

int redis_command_master(struct redis *r, int master, int argc, const char **argv, const size_t *argvlen,
                         rlink_reply_cb *cb, void *priv)
{
    if (r->cluster)
        return rcluster_command_master(&r->many, master, argc, argv, argvlen, cb, priv);
    return master == 0 ? rlink_command(&r->one, RLINK_CMD_LINK, argc, argv, argvlen, cb, priv) : -1;
}

int redis_is_cluster(const struct redis *r) { return r->cluster; }

long redis_waits(const struct redis *r, int short_only)
{
    if (!r->cluster)
        return short_only ? r->one.waits_short : r->one.waits;
    long n = 0;
    for (int i = 0; i < r->many.nnodes; i++)
        n += short_only ? r->many.nodes[i]->rl.waits_short : r->many.nodes[i]->rl.waits;
    return n;
}

int redis_eval(struct redis *r, const struct rlink_script *s, int nkeys, int argc, const char **argv,
               const size_t *argvlen, rlink_reply_cb *cb, void *priv)
{
    return redis_eval_on(r, RLINK_CMD_LINK, s, nkeys, argc, argv, argvlen, cb, priv);
}

int redis_eval_on(struct redis *r, int link, const struct rlink_script *s, int nkeys, int argc, const char **argv,
                  const size_t *argvlen, rlink_reply_cb *cb, void *priv)
{
    if (r->cluster)
        return rcluster_eval(&r->many, link, s, nkeys, argc, argv, argvlen, cb, priv);
    return rlink_eval_on(&r->one, link, s, nkeys, argc, argv, argvlen, cb, priv);
}

static int is(const char *word, size_t len, const char *name) { return len == strlen(name) && strncasecmp(word, name, len) == 0; }

int redis_key_index(int argc, const char **argv, const size_t *argvlen)
{
    if (argc < 2)
        return -1;
    if (is(argv[0], argvlen[0], "EVAL") || is(argv[0], argvlen[0], "EVALSHA"))
        return argc > 3 && argvlen[2] < 8 && strtol(argv[2], NULL, 10) > 0 ? 3 : -1;
    if (is(argv[0], argvlen[0], "XGROUP") || is(argv[0], argvlen[0], "XINFO"))
        return argc > 2 ? 2 : -1;
    if (is(argv[0], argvlen[0], "XREADGROUP") || is(argv[0], argvlen[0], "XREAD")) {
        for (int i = 1; i + 1 < argc; i++)
            if (is(argv[i], argvlen[i], "STREAMS"))
                return i + 1;
        return -1;
    }
    static const char *const keyless[] = {"INFO", "PING", "WAIT", "CLUSTER", "SCRIPT", "CONFIG", "TIME"};
    for (size_t i = 0; i < sizeof keyless / sizeof keyless[0]; i++)
        if (is(argv[0], argvlen[0], keyless[i]))
            return -1;
    return 1;
}

int redis_command(struct redis *r, int link, int argc, const char **argv, const size_t *argvlen, rlink_reply_cb *cb,
                  void *priv)
{
    if (r->cluster)
        return rcluster_command(&r->many, link, redis_key_index(argc, argv, argvlen), argc, argv, argvlen, cb, priv);
    return rlink_command(&r->one, link, argc, argv, argvlen, cb, priv);
}

int redis_subscribe(struct redis *r, const char *channel, size_t len)
{
    return r->cluster ? rcluster_subscribe(&r->many, channel, len) : rlink_subscribe(&r->one, channel, len);
}

int redis_unsubscribe(struct redis *r, const char *channel, size_t len)
{
    return r->cluster ? rcluster_unsubscribe(&r->many, channel, len) : rlink_unsubscribe(&r->one, channel, len);
}
