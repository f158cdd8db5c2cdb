/* recon.h - reconciliation to the coin: one run over Redis and PostgreSQL
 * at one consistent cut, without pausing the gift path (docs/settlement.md,
 * "Reconciliation"; the checks are storage/migrations/007_reconcile.sql).
 *
 * Blocking: the run uses its own blocking libpq and hiredis connections,
 * so it runs in tipcast-admin or on a thread of tipcastd (recon_job.h),
 * never on an event loop.
 *
 * The cut: the chain heads of the ledger are noted first; then each wallet
 * shard's last stream id and its groups (lag, pending); then the wallets in
 * batches of up to RECON_BATCH of one shard, each batch with its shard's
 * last stream id read in the same script (the batch's cut); then every
 * room's all-time board with its watermarks, in one script per room; then,
 * per shard, the entries the ledger group has not acknowledged up to the
 * largest cut of that shard. Only then is PostgreSQL's snapshot taken, so
 * every entry at or before a cut is either in the snapshot or in the
 * backlog that was read (an entry leaves the backlog only once committed). */
#ifndef TIPCAST_RECON_H
#define TIPCAST_RECON_H

#include <stdint.h>

#include <hiredis/hiredis.h>
#include <libpq-fe.h>

#include "rsync.h"

/* Wallets read per script. */
#define RECON_BATCH 500
/* Most unacknowledged entries read per shard: past it the run stops with
 * "backlog too large" rather than read millions. */
#define RECON_BACKLOG_MAX 200000
/* Keys asked per SCAN step. */
#define RECON_SCAN_COUNT 1000
/* Most wallets and rooms a run reads (memory bound). */
#define RECON_KEYS_MAX 50000000
/* A pending entry idle longer than this is a finding, by default. */
#define RECON_IDLE_MS_DEFAULT 300000

/* The run's exit status (tipcast-admin's). */
#define RECON_CLEAN 0
#define RECON_MISMATCH 1
#define RECON_ERROR 2

struct recon_opts {
    const char *source;    /* "cli" or "scheduled" */
    const char *node;      /* who ran it (stored) */
    int shards;            /* wallet-shards */
    const char *statement; /* the provider's CSV statement file, or NULL */
    int64_t idle_ms;       /* a pending entry idle longer is a finding */
    int store;             /* store the report (reconcile_reports, alert) */
    int webhooks;          /* queue a reconcile.mismatch webhook when stored */
};

struct recon_result {
    int64_t report_id; /* 0 when not stored */
    int findings;
    int64_t coins_off;
    char *report; /* the report as JSON text (malloc'd), NULL on error */
    char err[512];
};

/* Runs every check once. Returns RECON_CLEAN or RECON_MISMATCH with the
 * report in r (free it with recon_result_free), or RECON_ERROR with the
 * reason in r->err (nothing stored; the report may be NULL). pg and rc are
 * connected; pg is left outside any transaction. */
int recon_run(PGconn *pg, struct rsync *rc, const struct recon_opts *o, struct recon_result *r);

void recon_result_free(struct recon_result *r);

/* Writes the report as text, one line per finding, to out. */
void recon_print_text(const char *report_json, FILE *out);

#endif
