/* ledger_sql.h - the SQL text of one ledger batch: pure functions from
 * outbox entries (gifts/entry.h) to the statements and COPY rows that write
 * them, so that the escaping that keeps user text out of the SQL can be
 * tested on its own.
 *
 * One form: the rows COPYed into the per-connection staging tables of
 * storage/migrations/003_ledger_split.sql, then one call of
 * tipcast_ledger_apply, which inserts what is new (orders with their
 * revenue split, ledger rows, volumes, balances, earnings, recharges,
 * refunds, webhooks) and nothing for a replay: right in every case. (An
 * earlier "fast" form COPYed straight into orders; the split needs the
 * volumes and rules of PostgreSQL, so every batch is staged now.)
 * The batch ends with the malformed entries set aside in outbox_rejects. Money
 * and ids are written as digits; every text either goes through COPY's
 * text escaping or is an E'' literal. */
#ifndef TIPCAST_LEDGER_SQL_H
#define TIPCAST_LEDGER_SQL_H

#include <stddef.h>
#include <stdint.h>

#include "entry.h"

/* The COPY statements of a batch, at most: orders, credits' ledger rows,
 * recharges and refunds. */
#define LEDGER_COPIES 3

/* A growing text buffer; `oom` is set (and writes stop) when memory runs
 * out. */
struct sbuf {
    char *p;
    size_t len, cap;
    int oom;
};

void sbuf_put(struct sbuf *b, const char *s, size_t n);
void sbuf_str(struct sbuf *b, const char *s);
void sbuf_i64(struct sbuf *b, int64_t v);
void sbuf_free(struct sbuf *b);

/* A COPY text-format field: \N for NULL (s NULL); backslash, tab, newline
 * and carriage return escaped; NUL, which PostgreSQL text cannot hold,
 * written as U+FFFD. */
void sbuf_copy_text(struct sbuf *b, const char *s, size_t len);
/* A SQL string literal E'...' (backslash and quote escaped, NUL as U+FFFD),
 * right whatever standard_conforming_strings says. */
void sbuf_literal(struct sbuf *b, const char *s, size_t len);
/* ts_ms as timestamptz input in UTC, "2025-01-31 23:59:59.123+00" (years
 * 1970..9999, as entry.h bounds them). */
void sbuf_time(struct sbuf *b, int64_t ts_ms);

/* One batch's query and the data of its COPY statements, in order. */
struct ledger_sql {
    struct sbuf sql;
    struct sbuf rows[LEDGER_COPIES];
    int ncopies;
};

/* Builds the batch's query; webhooks: tipcast_ledger_apply queues the
 * webhooks of what is new (a webhook-url is set). Returns 0 (check
 * ledger_sql_oom). Free with ledger_sql_free either way. */
int ledger_sql_build(struct ledger_sql *q, const struct entry *e, size_t n, int webhooks);

/* 1 when anything of q ran out of memory. */
int ledger_sql_oom(const struct ledger_sql *q);

void ledger_sql_free(struct ledger_sql *q);

#endif
