/* roomkeys.h - a room's Redis keys. Every one carries the hash tag {r:ROOM},
 * so that a room's scripts touch one hash slot and run unchanged on Redis
 * Cluster. */
#ifndef TIPCAST_ROOMKEYS_H
#define TIPCAST_ROOMKEYS_H

#include <stddef.h>

#include "board.h"
#include "jwt.h"

#define ROOM_KEY_MAX (ID_MAX + 16)

struct room_keys {
    char seq[ROOM_KEY_MAX];     /* tc:{r:ROOM}:seq   last event seq */
    char hist[ROOM_KEY_MAX];    /* tc:{r:ROOM}:hist  history stream */
    char nodes[ROOM_KEY_MAX];   /* tc:{r:ROOM}:nodes members per node */
    char chan[ROOM_KEY_MAX];    /* tc:{r:ROOM}:ev    pub/sub channel */
    char wm[ROOM_KEY_MAX];      /* tc:{r:ROOM}:wm    applied outbox watermarks */
    char board[BOARD_KEY_MAX];  /* tc:{r:ROOM}:board:all */
    char combo[ROOM_KEY_MAX];   /* tc:{r:ROOM}:combo     open combos (hash: sender -> state) */
    char combo_due[ROOM_KEY_MAX]; /* tc:{r:ROOM}:combo:due when each closes (sorted set) */
    char pins[ROOM_KEY_MAX];    /* tc:{r:ROOM}:pins      pinned tips: order -> until ms (sorted set) */
    char pin[ROOM_KEY_MAX];     /* tc:{r:ROOM}:pin       pinned tips: order -> the pin (hash) */
    char mods[ROOM_KEY_MAX];    /* tc:{r:ROOM}:mods      the room's moderators (set) */
};

void room_keys(const char *id, struct room_keys *k);

/* The room's channel name "tc:{r:ROOM}:ev" into buf. */
void room_channel(const char *id, char *buf, size_t cap);

/* The room id in a channel name "tc:{r:ROOM}:ev" into out (ID_MAX + 1
 * bytes). Returns 1, or 0 when the name is not a room's channel. */
int room_channel_id(const char *chan, size_t len, char *out);

#endif
