/* results.h - what one run measured, filled by the bench's parts (run.h)
 * and written out by report.c. Held in the run's one static struct bench;
 * every array has a fixed bound. */
#ifndef TIPCAST_BENCH_RESULTS_H
#define TIPCAST_BENCH_RESULTS_H

#include <stdint.h>

#include "hist.h"
#include "opts.h"

/* One row per second of the run (warm-up included); past the bound, rows
 * are no longer kept (the totals still count). */
#define RESULTS_SECONDS_MAX 4000
#define RESULTS_STEPS_MAX 64
#define RESULTS_CODES_MAX 32

struct results_second {
    int t;
    double rate;
    uint64_t sent, acks, deliveries, errors;
    double ack_p50_ms, ack_p99_ms, deliv_p50_ms, deliv_p99_ms;
    double cpu_pct;   /* <0 unknown */
    long rss_kb;      /* <0 unknown */
    long long backlog; /* <0 unknown */
    double pg_per_s;  /* <0 unknown */
};

struct results_step {
    double rate;
    double ack_p99_ms, deliv_p99_ms;
    uint64_t sent, answered, errors;
    int held;
    int refine; /* a --refine step, between a held rate and a failed one */
};

struct results {
    char started[40];
    /* When the measured window began (after the warm-up), ms since the
     * epoch: per_second's second t covers [start + t - 1 s, start + t s). */
    int64_t measure_start_ms;
    /* Connections. */
    uint64_t conn_opened, conn_authed, conn_joined, conn_failed, conn_lost;
    /* Sends and their outcome, over the whole run (warm-up included). */
    uint64_t sent, acked, delivered, delivered_foreign, expected_deliveries;
    uint64_t errors_total;
    struct {
        char code[48];
        uint64_t n;
    } errors[RESULTS_CODES_MAX];
    int nerrors;
    /* The measured window (after warm-up). */
    double measured_s;
    uint64_t acks_measured, deliveries_measured;
    struct hist ack, deliv;
    /* Server. */
    double cpu_s;          /* during the measured window, <0 unknown */
    long rss_kb_max, rss_kb_before; /* <0 unknown */
    double rss_kb_per_conn; /* <0 unknown */
    long long backlog_max;  /* <0 unknown */
    double pg_orders_per_s; /* <0 unknown */
    /* --find-max. */
    double max_rate;
    struct results_step steps[RESULTS_STEPS_MAX];
    int nsteps;
    struct results_second secs[RESULTS_SECONDS_MAX];
    int nsecs;
};

/* Counts one error of `code` (codes past RESULTS_CODES_MAX share "other"). */
void results_error(struct results *r, const char *code);

#endif
