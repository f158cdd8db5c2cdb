/* leaderboard_outbox.c - leaderboard includes gifts: must not build (leaderboard uses core only). */
#include "outbox.h"
