/* rooms_below.c - rooms includes what it links (gifts, leaderboard, core): must build, so that the
 * failures of the other cases are the layering's, not the harness's. */
#include "board.h"
#include "outbox.h"
#include "roomstore.h"

int rooms_below_builds(void) { return BOARD_TOP_N + OUTBOX_SHARDS_MAX; }
