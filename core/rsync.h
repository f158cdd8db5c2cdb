/* rsync.h - a blocking Redis client for work off the event loop (the
 * reconciliation, the admin tools): one server, or a Redis Cluster whose
 * commands go to the master of their key's slot (redis_key_index; EVAL and
 * EVALSHA by their first key), MOVED and ASK followed. */
#ifndef TIPCAST_RSYNC_H
#define TIPCAST_RSYNC_H

#include <stddef.h>

#include <hiredis/hiredis.h>

#include "slots.h"

#define RSYNC_REDIRECTS_MAX 5

struct rsync {
    int cluster;
    int timeout_s;
    struct slots_map map;                    /* a cluster's */
    redisContext *conn[SLOTS_MASTERS_MAX];   /* per master of the map (one: conn[0]) */
    int nconn;
    char err[512];                           /* why the last call failed */
};

/* Connects to host:port, or to the cluster of the seeds "host:port,..."
 * when seeds is not empty (its map read from the first seed that answers).
 * Returns 0, or -1 with why in r->err (then rsync_close). */
int rsync_connect(struct rsync *r, const char *host, int port, const char *seeds, int timeout_s);
void rsync_close(struct rsync *r);

/* One command, on its key's master. Returns the reply (freeReplyObject it;
 * an error reply is returned as it is), or NULL with why in r->err. */
redisReply *rsync_command(struct rsync *r, int argc, const char **argv, const size_t *len);

/* How many masters, and a command to master i (SCAN, SCRIPT LOAD). */
int rsync_masters(const struct rsync *r);
redisReply *rsync_command_master(struct rsync *r, int master, int argc, const char **argv, const size_t *len);

#endif
