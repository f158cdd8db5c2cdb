/* slots.h - Redis Cluster's key space as tipcastd sees it: the map from
 * slots to masters (read from CLUSTER SLOTS), and the MOVED and ASK
 * redirections a master answers for a slot it does not serve. A key's slot
 * is hash_keyslot's (core/hash.h).
 *
 * This module only computes; the link to the masters (core/rcluster) keeps
 * one map and routes by it. */
#ifndef TIPCAST_SLOTS_H
#define TIPCAST_SLOTS_H

#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

#define SLOTS_N 16384 /* = HASH_SLOTS */
/* Most masters a map holds; a reply that names more is refused. */
#define SLOTS_MASTERS_MAX 64
/* Longest host name or address kept for a node. */
#define SLOTS_HOST_MAX 255

struct slots_node {
    char host[SLOTS_HOST_MAX + 1];
    int port;
};

/* Which master serves each slot. owner[s] is an index into masters, or
 * SLOTS_NONE for a slot no master serves (a cluster being set up, or a
 * failed master's slots before its failover). */
#define SLOTS_NONE 0xFFFF
struct slots_map {
    uint16_t owner[SLOTS_N];
    struct slots_node masters[SLOTS_MASTERS_MAX];
    int nmasters;
};

/* Fills m from a CLUSTER SLOTS reply: each element [first, last, master,
 * replica...], a node being [host, port, ...]. An empty host means the
 * node that answered: `seed` is used. Masters are numbered in the order
 * the reply first names them. Returns 0, or -1 with why in err (m is then
 * unchanged): not an array of ranges, a range out of 0..16383 or backwards,
 * a slot given twice, more than SLOTS_MASTERS_MAX masters. */
int slots_map_parse(struct slots_map *m, const redisReply *r, const struct slots_node *seed, char *err,
                    size_t errlen);

/* How many slots no master serves. */
unsigned slots_unserved(const struct slots_map *m);

/* A redirection in an error reply: "MOVED <slot> <host>:<port>" or
 * "ASK <slot> <host>:<port>" (the host may be empty: the node that
 * answered). */
enum slots_redirect { SLOTS_NOT_REDIRECT, SLOTS_MOVED, SLOTS_ASK };

/* Reads an error reply's text of len bytes. Returns SLOTS_MOVED or
 * SLOTS_ASK with the slot and the node in *slot and *node, or
 * SLOTS_NOT_REDIRECT for any other error (or a malformed redirection). */
enum slots_redirect slots_redirect_parse(const char *text, size_t len, unsigned *slot, struct slots_node *node);

#endif
