-- 018_ledger_entry: ledger_entry indexes only the rows that are not a gift's
-- or a tip's.
--
-- ledger_entry (006, remade on the partitions by 016) answers one question,
-- reconciliation's "is this outbox entry in the ledger already?" for the
-- entries the ledger group has not acknowledged (007). A gift's or tip's
-- ledger rows (three or four of them, each with entry = its order id) are
-- written in the same transaction as its order, whose primary key already
-- answers that question by order id. Indexing them again cost the ledger
-- consumer an index insertion for every row of every gift, 5-6% of
-- tipcast_ledger_apply's time (docs/benchmarks.md, "What limits it").
-- So the index keeps the other rows (credits, pledges, recharges, refunds,
-- each with entry = the order id of the outbox entry that made it), and
-- reconciliation asks orders for a gift's or a tip's entry.
--
-- Building the index reads every partition of the ledger once, under a lock
-- that holds the ledger consumer's writes back meanwhile (docs/operations.md,
-- "Upgrading").

DROP INDEX ledger_entry;
CREATE INDEX ledger_entry ON ledger (entry) WHERE entry IS NOT NULL AND kind NOT IN ('gift', 'tip');

-- Reconciliation's two questions, made from 007's own text (as 016 does for
-- tipcast_ledger_apply); the migration fails if a piece is not found. An
-- order id is in orders, or among the ledger rows that are not a gift's or
-- a tip's: never both, so one of the two answers for each kind of entry.
DO $$
DECLARE
    fn regprocedure := 'tipcast_reconcile_check_007(bigint, boolean, timestamptz, timestamptz)'::regprocedure;
    patched text := pg_get_functiondef(fn);
    old text := 'NOT EXISTS (SELECT 1 FROM ledger l WHERE l.entry = b.order_id)';
    new text := 'NOT EXISTS (SELECT 1 FROM orders o WHERE o.order_id = b.order_id) '
                || 'AND NOT EXISTS (SELECT 1 FROM ledger l WHERE l.entry = b.order_id '
                || 'AND l.kind NOT IN (''gift'', ''tip''))';
BEGIN
    IF (length(patched) - length(replace(patched, old, ''))) / length(old) <> 2 THEN
        RAISE EXCEPTION '018: tipcast_reconcile_check_007 does not ask "%" twice', old;
    END IF;
    EXECUTE replace(patched, old, new);
END;
$$;
