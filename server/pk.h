/* pk.h - PK battles on this node (docs/settlement.md "PK battles",
 * docs/protocol.md `pk_score` and the `pk_end` event).
 *
 * Battles live in PostgreSQL (pk_battles, migration 012); they are made
 * and accepted through the admin API. Every node, once per PK_TICK_MS:
 *   1. reads the running battles with their live scores (the coins of the
 *      orders stored in PostgreSQL whose money moved in the battle's
 *      window) and the decided ones not yet announced (tipcast_pk_tick,
 *      migrations 013 and 014): the node keeps what it has counted for good
 *      per battle (struct pk_live) and asks only for the orders since its
 *      checkpoint. While battles run, it first asks every wallet shard how
 *      far the ledger has committed its outbox (lua/pk_horizon.lua): the
 *      checkpoint moves up to there (less PK_CUT_GRACE_MS), so a tick
 *      re-reads about a second of orders, however long the battle (a minute
 *      at most while the ledger is behind);
 *   2. pushes `pk_score` to its own members of both rooms of each running
 *      battle whose scores changed since its last push, or were last pushed
 *      PK_REPUSH_MS ago (so a room gets at most one push per tick, however
 *      many gifts arrive); a member who joins either room gets the scores
 *      right after its `joined` (struct rooms' on_joined);
 *   3. for one battle past its end, checks the cut on every wallet shard
 *      (lua/pk_horizon.lua: Redis's clock past the end and every outbox
 *      entry before it committed by the ledger) and, when all pass, decides it
 *      (tipcast_pk_decide: the first node stores the result, a later one
 *      computes it again and compares; both log it);
 *   4. or, for one battle decided by another node, computes the result
 *      again and compares it with the stored one (logged either way);
 *   5. or, for one decided battle not announced, publishes the `pk_end`
 *      event into both rooms (lua/pk_announce.lua, once per room whichever
 *      node does it) and marks it announced.
 * A node that dies at any step leaves the battle to the next tick of any
 * node: nothing is lost, and nothing is announced twice. */
#ifndef TIPCAST_PK_H
#define TIPCAST_PK_H

#include <stdint.h>

#include <uv.h>

#include "config.h"
#include "jwt.h"
#include "pgconn.h"
#include "redis.h"

struct rooms;
struct outbox;

#define PK_TICK_MS 1000
/* Unchanged scores are pushed again this often. */
#define PK_REPUSH_MS 5000
/* Battles one tick reads (the query's LIMIT). */
#define PK_BATTLES_MAX 256
/* Redis's clock must be this far past a battle's end before its cut. */
#define PK_CUT_GRACE_MS 1000
/* How long a room keeps the marker of a battle it announced. */
#define PK_ANNOUNCED_TTL_MS (7LL * 24 * 3600 * 1000)
#define PK_TIMEOUT_MS 5000

struct pk_battle {
    int64_t id;
    int running;
    int announced;
    char room_a[ID_MAX + 1], room_b[ID_MAX + 1];
    int64_t start_ms, end_ms, score_a, score_b;
    char winner[ID_MAX + 1]; /* "" for a draw */
};

/* A running battle's live score as this node counts it: the coins of the
 * orders whose created_at is before from_ms, counted for good (the tick
 * adds those since). */
struct pk_live {
    int64_t id, from_ms, settled_a, settled_b;
};

/* What this node did, for the metrics page. A decision is `stored` (this
 * node stored the result), `verified` (it computed the stored result
 * again and found it the same) or `differs` (it did not: logged as an
 * error, and worth an alert). */
struct pk_stats {
    uint64_t stored, verified, differs;
    uint64_t announced; /* decided battles this node announced into both rooms */
};

/* The scores last pushed, per battle, and when (monotonic ms). */
struct pk_pushed {
    int64_t id, score_a, score_b, at_ms;
};

struct pk {
    const struct config *cfg;
    const char *node_id;
    uv_loop_t *loop;
    struct redis *rl;
    struct outbox *ob;
    struct rooms *rooms;
    struct pgconn *pg;
    uv_timer_t timer;
    int started;
    int busy; /* a tick's step is in flight */
    struct rlink_script horizon_script, announce_script;
    struct pk_battle battles[PK_BATTLES_MAX];
    int nbattles;
    struct pk_live live[PK_BATTLES_MAX], next_live[PK_BATTLES_MAX];
    int nlive, nnext_live;
    struct pk_pushed pushed[PK_BATTLES_MAX];
    int npushed;
    /* Decided battles this node has computed (and compared): a ring. */
    int64_t verified[PK_BATTLES_MAX];
    int nverified;
    /* The step in flight: the battle, and the Redis answers awaited. */
    struct pk_battle cur;
    int waiting, failed;
    /* The ledger's horizon being asked (ask_horizon), and what follows. */
    int64_t horizon_ms, redis_now_ms;
    void (*horizon_done)(struct pk *p);
    struct pk_stats stats;
};

/* Registers the scripts (before redis_start), and hooks the rooms' joins
 * (after rooms_init). */
void pk_init(struct pk *p, const struct config *cfg, const char *node_id, uv_loop_t *loop, struct redis *rl,
             struct outbox *ob, struct rooms *rooms);
/* Connects to PostgreSQL and starts ticking. 0, or -1 when out of memory. */
int pk_start(struct pk *p);
void pk_stop(struct pk *p);
/* Battles running now, as this node's last tick read them. */
int pk_running(const struct pk *p);

#endif
