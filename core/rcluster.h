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
 * Each master's rlink WAITs for its own replicas (rcluster_set_wait). Rooms
 * use sharded pub/sub: a channel is subscribed on its slot's master.
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
/* Links opened with rcluster_open, on every master. */
#define RCLUSTER_OPEN_MAX (RLINK_LINKS_MAX - 2)

struct rcluster;

struct rcluster_node {
    struct slots_node addr;
    struct rcluster *rc;
    struct rlink rl;
};

struct rcluster {
    uv_loop_t *loop;
    struct rlink_hooks hooks; /* the front's: see rcluster_init */
    int was_ready;
    int nmasters_logged;
    int wait_replicas, wait_timeout_ms;
    const char *open_names[RCLUSTER_OPEN_MAX];
    int nopen;
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
 * or -1 with why in err (a seed without a port, too many).
 *
 * hooks (may be NULL) are rlink's, for the cluster as one: on_cmd_ready
 * when every slot is served and every master's command connection is up,
 * and again when a master's comes back then; the subscriber events of
 * every master's subscriber connection, on_sub_lost when any one of them
 * drops (every subscription is then to be made again), on_unsubscribed
 * also when a master pushes one for a slot it gave away, on_sub_error when
 * one was refused (a MOVED among them changes the map at once). */
int rcluster_init(struct rcluster *rc, uv_loop_t *loop, const char *seeds, const struct rlink_hooks *hooks, char *err,
                  size_t errlen);

/* As rlink_set_wait, for every master (before rcluster_start). */
void rcluster_set_wait(struct rcluster *rc, int replicas, int timeout_ms);

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
/* The same for every master's `link`; -1 is the subscriber, -2 command,
 * reads and subscriber together. */
int rcluster_up(const struct rcluster *rc, int link);
/* Masters in the map (0 before the first). */
int rcluster_masters(const struct rcluster *rc);

/* Opens a connection of that name on every master, as rlink_open (and on
 * the masters that come later). Returns its link number, the same on
 * each, or -1. After rcluster_start. */
int rcluster_open(struct rcluster *rc, const char *name);

/* Runs script s on `link` of the master of its first key's slot (argv holds
 * keys then args; every key must be of that slot). See rlink_eval. */
int rcluster_eval(struct rcluster *rc, int link, const struct rlink_script *s, int nkeys, int argc, const char **argv,
                  const size_t *argvlen, rlink_reply_cb *cb, void *priv);

/* Sends a command whose key is argv[key] to its slot's master (key -1:
 * the master of slot 0). */
int rcluster_command(struct rcluster *rc, int link, int key, int argc, const char **argv, const size_t *argvlen,
                     rlink_reply_cb *cb, void *priv);
/* Sends a command to master number `master` of the map (0..masters-1). */
int rcluster_command_master(struct rcluster *rc, int master, int argc, const char **argv, const size_t *argvlen,
                            rlink_reply_cb *cb, void *priv);

/* Sharded (un)subscription on the master of the channel's slot. Returns 0,
 * or -1 when that master or its subscriber connection is not up. */
int rcluster_subscribe(struct rcluster *rc, const char *channel, size_t len);
int rcluster_unsubscribe(struct rcluster *rc, const char *channel, size_t len);

#endif
