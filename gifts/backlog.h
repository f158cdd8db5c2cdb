/* backlog.h - how far each consumer group of the outbox is behind, for the
 * metrics page: every BACKLOG_POLL_MS, one XINFO GROUPS per wallet shard on
 * the shared command connection (asynchronous, like every Redis command of
 * the node), summed per group over the shards once every shard answered.
 *
 * Per group: `pending`, entries delivered to a consumer and not yet
 * acknowledged; `lag`, entries of the streams not yet delivered to the
 * group (Redis 7's XINFO GROUPS "lag"). Redis cannot always tell the lag
 * (after entries were deleted from inside the range the group has not
 * read); a group whose lag some shard could not tell has lag_known 0.
 *
 * The figures are of the streams, not of this node: every node of a
 * cluster reports the same ones. A round with a failed command is dropped,
 * and the figures of the last whole round stay (with their time). */
#ifndef TIPCAST_BACKLOG_H
#define TIPCAST_BACKLOG_H

#include <stdint.h>

#include "outbox.h"

/* Interval of the polls. */
#define BACKLOG_POLL_MS 5000
/* The consumer groups reported: ledger and rooms. */
#define BACKLOG_GROUPS 2

struct backlog_group {
    int64_t pending;
    int64_t lag;
    int lag_known;
};

struct backlog {
    struct outbox *ob;
    int64_t next_ms;
    int inflight;                               /* replies of the round not yet in */
    int failed;                                 /* one of them failed */
    struct backlog_group round[BACKLOG_GROUPS]; /* the round being summed */
    struct backlog_group last[BACKLOG_GROUPS];  /* the latest whole round */
    int have;                                   /* a round has completed */
    int64_t updated_ms;                         /* when it did (clock_mono_ms) */
};

void backlog_init(struct backlog *b, struct outbox *ob);

/* Starts a poll when one is due and none is in flight, and the command
 * connection is up (the caller's periodic timer; returns at once). */
void backlog_tick(struct backlog *b, int64_t now_ms);

/* The name of group i < BACKLOG_GROUPS. */
const char *backlog_group_name(int i);

#endif
