/* redis.h - the Redis that tipcastd's modules use: one server (core/rlink)
 * or a Redis Cluster (core/rcluster), behind one set of calls. Modules
 * never know which: every script and command goes to the master of its
 * first key's slot, a room's channel to the master of its slot, and the
 * link numbers (RLINK_CMD_LINK, RLINK_READ_LINK, redis_open's) name one
 * connection per master.
 *
 * A command's key is found as Redis's own command table says: argv[3] for
 * EVAL and EVALSHA with keys, argv[2] for XGROUP and XINFO, the first stream after STREAMS for XREADGROUP, none for
 * INFO, PING and the like (they go to the master of slot 0; see
 * redis_command_master for every master), argv[1] for the rest.
 *
 * Contracts are rlink's (core/rlink.h). */
#ifndef TIPCAST_REDIS_H
#define TIPCAST_REDIS_H

#include <stddef.h>

#include <uv.h>

#include "rcluster.h"
#include "rlink.h"

struct redis {
    int cluster; /* 1: `many` is used, else `one` */
    struct rlink one;
    struct rcluster many;
    char where[300]; /* "host:port", or "cluster seeds ..." for log lines */
};

/* Prepares r for the Redis at host:port, or for the cluster of the seed
 * nodes "host:port,..." when seeds is not empty. Returns 0, or -1 with why
 * in err (a malformed seed list). */
int redis_init(struct redis *r, uv_loop_t *loop, const char *host, int port, const char *seeds,
               const struct rlink_hooks *hooks, char *err, size_t errlen);
/* Checks a redis-cluster seed list (empty: one Redis) as redis_init will:
 * 0, or -1 with why in err. For the start's configuration checks. */
int redis_seeds_check(const char *seeds, char *err, size_t errlen);
void redis_set_wait(struct redis *r, int replicas, int timeout_ms);
void redis_script_add(struct redis *r, struct rlink_script *s);
void redis_start(struct redis *r);
void redis_stop(struct redis *r);
/* After the loop closed the handles that redis_stop closes. */
void redis_free(struct redis *r);

int redis_cmd_ready(const struct redis *r);
int redis_sub_ready(const struct redis *r);
int redis_ready(const struct redis *r);
int redis_up(const struct redis *r, int link);
int redis_open(struct redis *r, const char *name);

/* How many masters (1 for one server; 0 for a cluster whose map is not
 * read yet), and a command to master i of them (for checks that hold per
 * server: INFO). */
int redis_masters(const struct redis *r);
int redis_command_master(struct redis *r, int master, int argc, const char **argv, const size_t *argvlen,
                         rlink_reply_cb *cb, void *priv);
/* 1 on a cluster: a command's keys must then be of one slot. */
int redis_is_cluster(const struct redis *r);
/* WAITs sent, and those answered by too few replicas (metrics). */
long redis_waits(const struct redis *r, int short_only);

int redis_eval(struct redis *r, const struct rlink_script *s, int nkeys, int argc, const char **argv,
               const size_t *argvlen, rlink_reply_cb *cb, void *priv);
int redis_eval_on(struct redis *r, int link, const struct rlink_script *s, int nkeys, int argc, const char **argv,
                  const size_t *argvlen, rlink_reply_cb *cb, void *priv);
int redis_command(struct redis *r, int link, int argc, const char **argv, const size_t *argvlen, rlink_reply_cb *cb,
                  void *priv);
int redis_subscribe(struct redis *r, const char *channel, size_t len);
int redis_unsubscribe(struct redis *r, const char *channel, size_t len);

/* The index of a command's key in argv, or -1 (pure; see above). */
int redis_key_index(int argc, const char **argv, const size_t *argvlen);

#endif
