/* pins.h - the pin-tiers setting: AMOUNT:SECONDS pairs, amounts increasing.
 * The room script (rooms/lua/room_apply.lua) reads the same string for
 * each tip; this checks it once at start, so that the script never meets a
 * malformed one. */
#ifndef TIPCAST_PINS_H
#define TIPCAST_PINS_H

#include <stddef.h>

#define PIN_TIERS_MAX 16
/* Longest a tip stays pinned. */
#define PIN_SECONDS_MAX 86400

/* 0, or -1 with a message in err: an amount that is not a positive integer
 * above the previous one, seconds not in 1..PIN_SECONDS_MAX, more than
 * PIN_TIERS_MAX pairs. "" (no pins) is valid. */
int pin_tiers_check(const char *spec, char *err, size_t errlen);

#endif
