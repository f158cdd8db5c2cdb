/* ledger.h - the `ledger` consumer group: the wallet shards' outbox entries
 * into PostgreSQL, exactly once in effect.
 *
 * For every shard whose ledger lease this node holds (gifts/outbox.h), the
 * consumer reads the outbox stream with XREADGROUP on a connection of its
 * own, writes each batch in ONE PostgreSQL transaction and XACKs the batch
 * only after that transaction committed:
 *   gift, tip  one orders row (ON CONFLICT (order_id) DO NOTHING) and, only
 *              when it was new, two ledger rows (user -A, creator +A) and
 *              the creator's earnings raised by A;
 *   credit     two ledger rows (user +A, platform -A), ON CONFLICT DO NOTHING;
 *   malformed  one outbox_rejects row with the raw entry (never blocks the
 *              stream; a non-empty table is an incident).
 * Delivery is at least once (a crash between COMMIT and XACK replays the
 * batch); the unique keys make a replay change nothing. A batch is first
 * sent as COPY of its rows straight into orders and ledger, with the
 * earnings summed by the consumer; a batch with an order already written
 * fails that on a unique key as a whole and is written again with
 * INSERT ... ON CONFLICT DO NOTHING, its ledger rows and earnings fed only
 * by the orders actually inserted.
 *
 * When it gains a shard it first claims what a dead consumer left pending
 * (XAUTOCLAIM), then reads its own pending entries (id 0), then new ones
 * (>). While PostgreSQL is down nothing is read or acknowledged: entries
 * wait in the outbox and the batch is retried with backoff.
 *
 * It also trims the outbox of the shards it owns, every LEDGER_TRIM_MS, of
 * the entries that both groups (ledger, rooms) have acknowledged
 * (server/lua/outbox_trim.lua; never by length).
 *
 * Everything runs on the loop without blocking: Redis through rlink,
 * PostgreSQL through pgconn (which re-makes the connection with backoff).
 */
#ifndef TIPCAST_LEDGER_H
#define TIPCAST_LEDGER_H

#include <stdint.h>

#include <uv.h>

/* The housekeeping timer: backoff, leases, trimming. */
#define LEDGER_TICK_MS 100
/* How often the owned shards' outboxes are trimmed. */
#define LEDGER_TRIM_MS 2000
/* Wait after a failed read, write or acknowledgement, and before
 * reconnecting to PostgreSQL; doubles up to max. */
#define LEDGER_BACKOFF_MIN_MS 100
#define LEDGER_BACKOFF_MAX_MS 2000
/* A PostgreSQL connect or transaction that takes longer has failed. */
#define LEDGER_PG_TIMEOUT_MS 30000
/* Entries claimed from a dead consumer per XAUTOCLAIM. */
#define LEDGER_CLAIM_COUNT 1000
/* Most streams in one XREADGROUP (its arguments are bounded by rlink). */
#define LEDGER_STREAMS_PER_READ 100
/* Most ids in one XACK. */
#define LEDGER_ACK_IDS_MAX 200
/* An entry larger than this (all fields and values) is rejected. */
#define LEDGER_ENTRY_BYTES_MAX 65536
/* An entry's time (ts, ms since 1970) later than the end of year 9999 is
 * rejected: PostgreSQL could not store it and the batch would never commit. */
#define LEDGER_TS_MS_MAX INT64_C(253402300799999)
/* A consumer of another node idle this long on a stream this node owns,
 * with nothing pending, is deleted from the group. */
#define LEDGER_CONSUMER_IDLE_MS 60000
/* Interval of the debug line with the flush rate and lag. */
#define LEDGER_STATS_LOG_MS 10000

struct ledger_stats {
    uint64_t batches;       /* transactions committed */
    uint64_t entries;       /* entries committed and acknowledged, replays included */
    uint64_t orders;        /* orders rows inserted (a replay inserts none) */
    uint64_t credits;       /* credit movements inserted */
    uint64_t rejects;       /* malformed entries set aside in outbox_rejects */
    uint64_t failures;      /* reads, transactions or acks that failed */
    uint64_t trimmed;       /* outbox entries trimmed */
    int64_t last_flush_ms;  /* duration of the latest transaction */
    int64_t last_lag_ms;    /* age of its newest entry when it committed */
};

/* Starts the consumer on `loop` (after rlink_start). Returns 0, or -1 when
 * it cannot get a Redis connection of its own (then nothing was started). */
int ledger_start(uv_loop_t *loop);

/* Stops it (call before rlink_stop): gives up the leases, abandons a
 * transaction in flight (its entries stay pending and are replayed by the
 * next owner), frees everything and closes its handles; the loop must run
 * until they are closed. Safe to call when ledger_start failed or never ran. */
void ledger_stop(void);

/* A copy of the counters. */
void ledger_stats(struct ledger_stats *out);

#endif
