/* fanlevel.h - fan levels: a viewer's all-time spend in a room (its score
 * on the room's all-time board) gives a level and a badge, by the
 * thresholds of the fan-levels setting ("THRESHOLD:BADGE,...", thresholds
 * increasing). The room script (rooms/lua/room_apply.lua) computes the same
 * from the same string for the events; this module does it for the board
 * entries. The table is set once at start, before the loop runs. */
#ifndef TIPCAST_FANLEVEL_H
#define TIPCAST_FANLEVEL_H

#include <stddef.h>
#include <stdint.h>

#define FANLEVEL_MAX 16
#define FANLEVEL_BADGE_MAX 32

/* Parses and installs spec ("" for none). Returns 0, or -1 with a message
 * in err when it is malformed: a threshold that is not a positive integer
 * above the previous one, a badge that is empty, longer than
 * FANLEVEL_BADGE_MAX or not of [A-Za-z0-9 _-], more than FANLEVEL_MAX. */
int fanlevel_init(const char *spec, char *err, size_t errlen);
/* The level of an all-time spend (0 below the first threshold), and its
 * badge ("" for level 0) when badge is not NULL. */
int fanlevel_of(int64_t spend, const char **badge);

#endif
