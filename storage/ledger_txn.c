/* ledger_txn.c - one batch's transaction (see ledger_txn.h and ledger.h).
 *
 * The batch goes as one multi-statement query, without BEGIN/COMMIT: the
 * statements of one simple query run as one implicit transaction that an
 * error anywhere rolls back entirely, with no aborted transaction block
 * left behind on the connection. */
#include "ledger_txn.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "log.h"

int ledger_txn_ready(const struct ledger *l) { return l->pg && pgconn_up(l->pg) && !pgconn_busy(l->pg); }

static void reset(struct ledger *l)
{
    l->pg_failed = 0;
    l->pg_error[0] = '\0';
    l->pg_sqlstate[0] = '\0';
    l->rows_orders = l->rows_credits = l->rows_recharges = l->rows_refunds = 0;
}

/* Hands the batch back to the consumer: applied, or every entry to be read
 * again. */
static void finish(struct ledger *l, int committed)
{
    struct entry_batch *b = l->batch;
    l->batch = NULL;
    if (!committed)
        for (size_t i = 0; i < b->n; i++)
            b->e[i].retry = 1;
    consumer_applied(&l->consumer, b);
}

static void committed(struct ledger *l)
{
    const struct entry_batch *b = l->batch;
    int64_t newest = 0, rejects = 0;
    for (size_t i = 0; i < b->n; i++) {
        if (b->e[i].ts_ms > newest)
            newest = b->e[i].ts_ms;
        rejects += b->e[i].kind == ENTRY_BAD;
    }
    int64_t took_us = clock_mono_us() - l->started_us;
    l->stats.batches++;
    l->stats.orders += (uint64_t)l->rows_orders;
    l->stats.credits += (uint64_t)l->rows_credits;
    l->stats.recharges += (uint64_t)l->rows_recharges;
    l->stats.refunds += (uint64_t)l->rows_refunds;
    l->stats.rejects += (uint64_t)rejects;
    l->stats.last_flush_ms = took_us / 1000;
    histogram_observe(&l->stats.flush, took_us);
    if (newest)
        l->stats.last_lag_ms = clock_wall_ms() - newest;
    if (rejects)
        log_msg(LOG_ERROR, "ledger: %" PRId64 " malformed outbox entries set aside in outbox_rejects", rejects);
    log_msg(LOG_DEBUG, "ledger: committed %zu entries (%" PRId64 " new orders, %" PRId64 " new credits, %" PRId64
            " recharges, %" PRId64 " refunds) in %" PRId64 " ms, %" PRId64 " ms after the newest was made", b->n,
            l->rows_orders, l->rows_credits, l->rows_recharges, l->rows_refunds, l->stats.last_flush_ms,
            l->stats.last_lag_ms);
    finish(l, 1);
}

static void txn_done(struct ledger *l, int ok)
{
    ledger_sql_free(&l->sql);
    if (!ok) {
        log_msg(LOG_WARN, "ledger: transaction of %zu entries failed: %s", l->batch->n,
                l->pg_error[0] ? l->pg_error : "connection lost");
        finish(l, 0);
        return;
    }
    committed(l);
}

void ledger_txn_result(PGresult *r, int ok, void *priv)
{
    struct ledger *l = priv;
    if (!r) {
        if (l->batch) /* ledger_stop has abandoned it otherwise */
            txn_done(l, ok && !l->pg_failed);
        return;
    }
    ExecStatusType st = PQresultStatus(r);
    if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK) {
        /* tipcast_ledger_apply's one row of counts (003_ledger_split.sql);
         * tipcast_ledger_staging's row has one field. */
        if (st == PGRES_TUPLES_OK && PQntuples(r) == 1 && PQnfields(r) == 4) {
            l->rows_orders = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
            l->rows_credits = strtoll(PQgetvalue(r, 0, 1), NULL, 10);
            l->rows_recharges = strtoll(PQgetvalue(r, 0, 2), NULL, 10);
            l->rows_refunds = strtoll(PQgetvalue(r, 0, 3), NULL, 10);
        }
    } else if (!l->pg_failed) {
        l->pg_failed = 1;
        pgconn_first_line(PQresultErrorMessage(r), l->pg_error, sizeof l->pg_error);
        const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        snprintf(l->pg_sqlstate, sizeof l->pg_sqlstate, "%s", state ? state : "");
    }
}

/* Sends the batch: staged, then applied (ledger_sql.h). */
static void send_batch(struct ledger *l)
{
    tc_assert(ledger_txn_ready(l) && l->batch && l->batch->n > 0);
    reset(l);
    ledger_sql_build(&l->sql, l->batch->e, l->batch->n, l->webhooks);
    if (ledger_sql_oom(&l->sql)) {
        snprintf(l->pg_error, sizeof l->pg_error, "out of memory building the SQL");
        txn_done(l, 0);
        return;
    }
    for (int i = 0; i < l->sql.ncopies; i++)
        l->copies[i] = (struct pgconn_copy){.data = l->sql.rows[i].p, .len = l->sql.rows[i].len};
    if (pgconn_query_copy(l->pg, l->sql.sql.p, l->copies, l->sql.ncopies, ledger_txn_result, l) < 0) {
        /* Refused: the connection was dropped (on_down), no callback. */
        pgconn_first_line(pgconn_error(l->pg), l->pg_error, sizeof l->pg_error);
        txn_done(l, 0);
    }
}

void ledger_txn_write(struct ledger *l, struct entry_batch *b)
{
    tc_assert(!l->batch);
    l->batch = b;
    l->started_us = clock_mono_us();
    reset(l);
    int only_gone = 1;
    for (size_t i = 0; i < b->n; i++)
        only_gone &= b->e[i].kind == ENTRY_GONE;
    if (only_gone) {
        finish(l, 1);
        return;
    }
    send_batch(l);
}
