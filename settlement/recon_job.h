/* recon_job.h - tipcastd's scheduled reconciliation: every
 * reconcile-interval-s, one run of recon.h on a thread of its own, with
 * its own blocking PostgreSQL and Redis connections, so that the event
 * loop and the gift path never wait for it. One node at a time: the run
 * holds a PostgreSQL advisory lock (pg_try_advisory_lock on its own
 * connection) and a node that cannot take it skips that round. Every run's
 * report is stored (reconcile_reports, source 'scheduled'), with an alert
 * and a webhook when it found anything. */
#ifndef TIPCAST_RECON_JOB_H
#define TIPCAST_RECON_JOB_H

#include <pthread.h>
#include <stdint.h>

#include "config.h"

/* The advisory lock's key (pg_try_advisory_lock). */
#define RECON_JOB_LOCK_KEY "7007300001"
/* Connecting to PostgreSQL or Redis gives up after this. */
#define RECON_JOB_CONNECT_S 10

struct recon_job_stats {
    /* Runs by outcome (written by the thread, read by the metrics page:
     * each a single aligned word). */
    volatile uint64_t clean, mismatch, error;
    volatile int64_t findings; /* of the last run, -1 before any */
};

struct recon_job {
    const struct config *cfg;
    const char *node;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stop;
    int started;
    struct recon_job_stats stats;
};

/* Starts the thread when reconcile-interval-s is not 0 (the first run
 * comes one interval after the start). cfg and node outlive the job. */
void recon_job_start(struct recon_job *j, const struct config *cfg, const char *node);
/* Asks the thread to stop and joins it (a run under way finishes first).
 * Safe when never started. */
void recon_job_stop(struct recon_job *j);

#endif
