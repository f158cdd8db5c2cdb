/* metrics.h - the Prometheus metrics page of a node (GET /metrics).
 *
 * The counting is done where the work is, in plain integers of the structs
 * each module already owns (conns, wallet, ledger, backlog); what belongs to
 * no module (messages by type, the start time) is in struct metrics,
 * embedded in struct server. Nothing on a hot path allocates, locks or
 * reads a clock it did not read before (one exception: a room frame
 * written to a member reads the monotonic clock once, beside its send).
 *
 * metrics_write makes the whole page into a caller's buffer from those
 * counters, so that any listener (the public port now, an admin port
 * later) can serve it. */
#ifndef TIPCAST_METRICS_H
#define TIPCAST_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "request.h"

/* Largest page: every label set is fixed (request types, error codes,
 * close codes, groups), so the page is about 20 KiB whatever the traffic. */
#define METRICS_PAGE_MAX (64 * 1024)
/* messages[] index of a message that could not be read as a request of a
 * known type. */
#define METRICS_MSG_INVALID REQ_COUNT

struct metrics {
    uint64_t messages[REQ_COUNT + 1]; /* received, by request type; the last: invalid */
    int64_t started_wall_ms;          /* the process's start (clock_wall_ms) */
};

struct server;

/* Writes the page (text format 0.0.4, PROM_CONTENT_TYPE) into buf. Returns
 * its length, or -1 when it did not fit in cap bytes. */
long metrics_write(const struct server *s, char *buf, size_t cap);

#endif
