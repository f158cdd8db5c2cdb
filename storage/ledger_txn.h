/* ledger_txn.h - one batch's PostgreSQL transaction (internal to the
 * ledger, see ledger.h). */
#ifndef TIPCAST_LEDGER_TXN_H
#define TIPCAST_LEDGER_TXN_H

#include "ledger.h"

/* 1 when connected with nothing in flight: a batch can be written. */
int ledger_txn_ready(const struct ledger *l);

/* Writes b in one transaction (or, for a batch of deleted entries, only
 * lets them be acknowledged), then hands it back to the consumer with
 * every entry marked retry when the transaction did not commit. */
void ledger_txn_write(struct ledger *l, struct entry_batch *b);

/* The transaction's results, for pgconn (see pgconn_result_cb). */
void ledger_txn_result(PGresult *r, int ok, void *priv);

#endif
