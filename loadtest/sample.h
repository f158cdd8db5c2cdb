/* sample.h - the server side of a run, sampled once per second on a thread
 * of its own so that blocking reads never stall the bench's event loop:
 * CPU time and RSS of the server processes (/proc), the outbox backlog
 * (Redis XLEN of every wallet shard) and PostgreSQL's order count.
 */
#ifndef TIPCAST_BENCH_SAMPLE_H
#define TIPCAST_BENCH_SAMPLE_H

#include "opts.h"

struct sample {
    double cpu_s;       /* utime+stime of the server pids, seconds; <0 unknown */
    long rss_kb;        /* VmRSS summed; <0 unknown */
    long long backlog;  /* sum of XLEN; <0 unknown */
    long long orders;   /* SELECT count(*) FROM orders; <0 unknown */
    double at_s;        /* CLOCK_MONOTONIC of the sample */
};

/* Reads the /proc part now, on the calling thread (for the baseline). */
void sample_proc(const struct opts *o, struct sample *s);
/* Starts the thread. Returns 0, or -1 when it cannot (then nothing runs).
 * The options must outlive sample_stop(). */
int sample_start(const struct opts *o);
/* The latest sample (all unknown before the first). */
void sample_latest(struct sample *s);
/* Stops and joins the thread; closes its Redis and PostgreSQL connections. */
void sample_stop(void);

#endif
