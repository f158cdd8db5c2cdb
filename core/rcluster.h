/* rcluster.h - tipcastd's link to a Redis Cluster: one rlink (command,
 * subscriber and reads connections) per master, and every script and
 * command sent to the master that serves its key's slot.
 *
 * The slot map (core/slots.h) is read with CLUSTER SLOTS from a seed node
 * at the start, and again when a master answers MOVED, when a connection to
 * a master is lost, and once a second while anything is amiss (a slot
 * without a master, a master not connected). A MOVED answer is followed at
 * once to the node it names (the map entry of that slot is changed at
 * once, the whole map read again behind it); an ASK answer sends ASKING
 * and the command to the node it names, without changing the map. A
 * command is redirected at most RCLUSTER_REDIRECTS_MAX times; after that
 * its caller gets the last error reply. CLUSTERDOWN (a failover under way)
 * and TRYAGAIN (keys of a slot being moved) say that nothing ran: the
 * caller gets NULL, as for a lost connection.
 *
 * Scripts are registered once here and loaded on every master as its
 * command connection comes up (rlink does that, and its NOSCRIPT retry).
 *
 * Contract, as rlink's: a function that takes a callback and returns 0
 * calls it exactly once, with the reply, or with NULL when the command's
 * connection was lost or its master is not connected (the caller's
 * "unavailable"); one that returns -1 never calls it. */
#ifndef TIPCAST_RCLUSTER_H
#define TIPCAST_RCLUSTER_H

#include <stddef.h>

#include <uv.h>

#include "rlink.h"
#include "slots.h"

/* Nodes known at once: the masters, and the seeds or former masters. */
#define RCLUSTER_NODES_MAX (SLOTS_MASTERS_MAX + 8)
#define RCLUSTER_SEEDS_MAX 8
#define RCLUSTER_REDIRECTS_MAX 5
/* Least time between two reads of the map, and the check while amiss. */
#define RCLUSTER_REFRESH_MIN_MS 100
#define RCLUSTER_CHECK_MS 1000

struct rcluster;

struct rcluster_node {
    struct slots_node addr;
    struct rcluster *rc;
    struct rlink rl;
};

struct rcluster {
    uv_loop_t *loop;
    struct slots_node seeds[RCLUSTER_SEEDS_MAX];
    int nseeds;
    struct rlink_script *scripts[RLINK_SCRIPTS_MAX];
    int nscripts;
    struct rcluster_node *nodes[RCLUSTER_NODES_MAX];
    int nnodes;
    struct slots_map map;
    int have_map;
    /* The node of each master of the map (map.masters[i]). */
    struct rcluster_node *owner[SLOTS_MASTERS_MAX];
    int started, stopping;
    int refreshing;
    uint64_t refreshed_ms; /* when the last read of the map was sent */
    int refresh_wanted;
    uv_timer_t check;
    long redirects;         /* MOVED and ASK answers followed, for metrics */
    long refreshes;         /* maps read */
};

/* Prepares rc for the seed nodes "host:port,host:port" (1..8). Returns 0,
 * or -1 with why in err (a seed without a port, too many). */
int rcluster_init(struct rcluster *rc, uv_loop_t *loop, const char *seeds, char *err, size_t errlen);

/* Registers a script (before rcluster_start); computes its sha. */
void rcluster_script_add(struct rcluster *rc, struct rlink_script *s);

/* Connects to the seeds and reads the map (returns at once). */
void rcluster_start(struct rcluster *rc);

/* Stops every node's link (see rlink_stop). The loop must then run until
 * the handles are closed; then rcluster_free. */
void rcluster_stop(struct rcluster *rc);
void rcluster_free(struct rcluster *rc);

/* 1 when the map serves every slot and every master's command connection is up. */
int rcluster_ready(const struct rcluster *rc);

/* Runs script s on the master of its first key's slot (argv holds keys then
 * args; every key must be of that slot). See rlink_eval. */
int rcluster_eval(struct rcluster *rc, const struct rlink_script *s, int nkeys, int argc, const char **argv,
                  const size_t *argvlen, rlink_reply_cb *cb, void *priv);

/* Sends a command whose key is argv[key] to its slot's master. */
int rcluster_command(struct rcluster *rc, int key, int argc, const char **argv, const size_t *argvlen,
                     rlink_reply_cb *cb, void *priv);

#endif
