/* consumer.h - one consumer group of the outbox streams: the one piece of
 * code that exactly-once rests on. The ledger (storage/ledger.c) and the
 * room feed (rooms/roomfeed.c) are two appliers of it.
 *
 * A shard's stream is read by one consumer of a group at a time, the node
 * holding the group's lease on it (lease.h), and in stream order. Per
 * shard:
 *   IDLE     not ours;
 *   CLAIM    just gained: what any other consumer of the group has pending
 *            (a dead node's, or this node's under its previous name) is
 *            claimed (XAUTOCLAIM) and becomes this node's own;
 *   PENDING  this node's pending entries are read again, from a cursor;
 *   LIVE     new entries are read (">").
 * The consumer takes one step at a time: claim one shard, or read the
 * owned shards (one XREADGROUP of up to CONSUMER_STREAMS_PER_READ streams,
 * each PENDING one from its cursor, each LIVE one for new entries, taking
 * turns when there are more), apply the batch, acknowledge what was
 * applied. An entry is acknowledged (XACK) only after its applier said it
 * was applied; one it could not apply sends its shard back to PENDING from
 * the start, after a backoff. Delivery is therefore at least once and in
 * order per shard: each applier makes a repeat change nothing (the ledger
 * by unique keys, the rooms by watermarks).
 *
 * Reads are made only when the applier is ready (the ledger: PostgreSQL
 * is up), so that while it is not, entries wait in Redis, not here. Every
 * command goes on the consumer's own Redis connection (its reads block).
 * The next read is sent once the acknowledgements are answered: the entries
 * that came meanwhile make the next batch bigger, and a batch costs the
 * ledger about the same whatever its size. A group with a gather time also
 * sends reads at most that often unless the last one filled its batch: at
 * a steady rate its batches hold what came in the gather time, not the one
 * or two entries of a fast round trip, while an entry that comes alone
 * (the read before it older than the gather time) goes on at once. An
 * applier with ops.gather says when gathering pays: while it says not,
 * every read goes at once. */
#ifndef TIPCAST_CONSUMER_H
#define TIPCAST_CONSUMER_H

#include <stdint.h>

#include <hiredis/hiredis.h>
#include <uv.h>

#include "entry.h"
#include "lease.h"

/* The housekeeping timer: leases, trimming, resuming after a backoff. */
#define CONSUMER_TICK_MS 100
/* How often a trimming group trims its shards' streams. */
#define CONSUMER_TRIM_MS 2000
/* Wait after a failed step; doubles up to the max, back to 0 on success. */
#define CONSUMER_BACKOFF_MIN_MS 100
#define CONSUMER_BACKOFF_MAX_MS 2000
/* Entries claimed from other consumers per XAUTOCLAIM. */
#define CONSUMER_CLAIM_COUNT 1000
/* On a cluster, where one command reads one stream (one slot), a read is
 * one XREADGROUP per stream, without BLOCK, sent together; when none had
 * anything, the next goes this much later (or after gather_ms if longer). */
#define CONSUMER_POLL_MS 5
/* There, a read that found entries (but filled no stream's share) is
 * followed by the next at least this much later: a read costs one command
 * per stream, so reads are not sent back to back for a few entries each. */
#define CONSUMER_SPLIT_GATHER_MS 2
/* Most streams in one XREADGROUP (its arguments are bounded by rlink). */
#define CONSUMER_STREAMS_PER_READ 100
/* Most ids in one XACK. */
#define CONSUMER_ACK_IDS_MAX 200
/* A consumer of another node idle this long on a shard this node owns,
 * with nothing pending, is deleted from the group. */
#define CONSUMER_IDLE_MS 60000
/* Interval of the debug line with the group's rate. */
#define CONSUMER_STATS_LOG_MS 10000

struct consumer;

struct consumer_ops {
    /* 1 when a batch could be applied now. */
    int (*ready)(void *ctx);
    /* Applies b's entries: sets `retry` on each one not applied, then calls
     * consumer_applied(c, b) exactly once, now or later. */
    void (*apply)(void *ctx, struct entry_batch *b);
    /* Optional: 1 when the next read should wait out the gather time (the
     * applier gains from bigger batches now), 0 to read at once. Without
     * it a group with a gather time always gathers. */
    int (*gather)(void *ctx);
};

struct consumer_cfg {
    const char *group;
    int per_read; /* most entries per read, shared by its streams */
    int block_ms;  /* how long a read of new entries waits for one */
    int gather_ms; /* reads at most this often unless the last was full; 0: no wait */
    int trims;    /* 1: this group trims the streams of its shards */
};

enum consumer_phase { PHASE_IDLE, PHASE_CLAIM, PHASE_PENDING, PHASE_LIVE };
enum consumer_step { STEP_IDLE, STEP_CLAIMING, STEP_READING, STEP_APPLYING, STEP_ACKING };

struct consumer_shard {
    enum consumer_phase phase;
    char cursor[OUTBOX_STREAM_ID_MAX + 1]; /* CLAIM: XAUTOCLAIM's; PENDING: XREADGROUP's */
    uint32_t gen; /* bumped when the phase is set anew (lease change, rewind) */
};

struct consumer_stats {
    uint64_t batches;  /* batches applied */
    uint64_t entries;  /* entries acknowledged */
    uint64_t retried;  /* entries an applier could not apply */
    uint64_t failures; /* reads, claims or acks that failed */
    uint64_t trimmed;  /* entries trimmed from the streams */
};

struct consumer {
    struct outbox *ob;
    struct redis *rl;
    uv_loop_t *loop;
    struct consumer_cfg cfg;
    struct consumer_ops ops;
    void *ctx;
    struct leases leases;
    struct consumer_shard sh[OUTBOX_SHARDS_MAX];
    int link;
    int started, stopping;
    enum consumer_step step;
    int read_from;                          /* first shard of the next read */
    int read_shards[CONSUMER_STREAMS_PER_READ], nread, read_count;
    uint32_t read_gen[CONSUMER_STREAMS_PER_READ]; /* each read shard's gen when it was sent */
    redisReply *parts[CONSUMER_STREAMS_PER_READ]; /* a cluster read's answers, copied */
    int parts_out, parts_failed;                  /* answers still to come; one failed */
    int64_t retry_at_ms;
    int backoff_ms;
    struct entry_batch batch;
    int acks_pending;                       /* XACKs of the last batch not yet answered */
    int ack_failed;                         /* one of them failed */
    uv_timer_t timer;
    uv_timer_t gather;                      /* wakes pump() when the next read may go */
    int64_t read_sent_ms, next_read_ms;     /* the last read's time; the next's earliest */
    int cmd_was_ready;
    int64_t next_lease_ms, next_trim_ms, next_stats_ms;
    struct consumer_stats stats;
    uint64_t logged_entries;
};

/* Prepares the consumer and registers its lease script (before
 * rlink_start). */
void consumer_init(struct consumer *c, struct outbox *ob, uv_loop_t *loop, const struct consumer_cfg *cfg,
                   const struct consumer_ops *ops, void *ctx);

/* Opens its Redis connection and starts the housekeeping timer (after
 * rlink_start). Returns 0, or -1 when Redis has no connection left. */
int consumer_start(struct consumer *c);

/* The applier's answer for the batch given to ops.apply. */
void consumer_applied(struct consumer *c, struct entry_batch *b);

/* Something ops.ready depends on changed: try the next step now. */
void consumer_kick(struct consumer *c);

/* Gives up the leases and stops. A batch still being applied is dropped
 * when its answer comes (its entries stay pending for the next owner). Safe
 * to call when consumer_start failed or never ran. */
void consumer_stop(struct consumer *c);

#endif
