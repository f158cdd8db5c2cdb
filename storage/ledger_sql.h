/* ledger_sql.h - the SQL text of one ledger batch: pure functions from
 * outbox entries (gifts/entry.h) to the statements and COPY rows that write
 * them, so that the escaping that keeps user text out of the SQL can be
 * tested on its own.
 *
 * Two forms (storage/ledger.h says when each is used):
 *   fast     the rows COPYed straight into orders and ledger, and the
 *            creators' earnings summed here and upserted: right only when
 *            no order or credit of the batch is written yet (a unique key
 *            fails it as a whole otherwise);
 *   careful  the same rows COPYed into staging tables, then applied by one
 *            INSERT ... ON CONFLICT DO NOTHING statement whose ledger rows
 *            and earnings are fed only by the orders it inserted: right in
 *            every case.
 * Both end with the malformed entries set aside in outbox_rejects. Money
 * and ids are written as digits; every text either goes through COPY's
 * text escaping or is an E'' literal. */
#ifndef TIPCAST_LEDGER_SQL_H
#define TIPCAST_LEDGER_SQL_H

#include <stddef.h>
#include <stdint.h>

#include "entry.h"

/* The COPY statements of a batch: orders, then ledger. */
#define LEDGER_COPIES 2

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

/* Builds the batch's query in the form asked for. Returns 0 (check
 * q->sql.oom and every rows[].oom), or -1 when the fast form cannot be
 * built because a creator's earnings in this batch do not fit an int64
 * (only the careful form can say what is wrong then). Free with
 * ledger_sql_free either way. */
int ledger_sql_build(struct ledger_sql *q, const struct entry *e, size_t n, int careful);

/* 1 when anything of q ran out of memory. */
int ledger_sql_oom(const struct ledger_sql *q);

void ledger_sql_free(struct ledger_sql *q);

#endif
