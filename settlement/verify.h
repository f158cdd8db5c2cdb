/* verify.h - the ledger's hash chains checked from outside PostgreSQL
 * (storage/migrations/006_ledger_chain.sql defines them; docs/settlement.md,
 * "Tamper-evident ledger").
 *
 * verify_ledger recomputes every row's hash with OpenSSL's SHA-256 from the
 * row's own fields and its predecessor's stored hash, in one REPEATABLE
 * READ READ ONLY transaction (a consistent cut while the consumers keep
 * writing), each chain streamed in seq order through a cursor: memory does
 * not grow with the ledger. Blocking libpq: for tipcast-admin, or a thread.
 *
 * Per chain it keeps the first fault (the lowest seq) and counts them all:
 *   edited          the row's hash is not SHA-256(previous hash || content)
 *   deleted         a seq gap: the rows between are missing
 *   inserted        a row where none can be: a seq at or below the one
 *                   before (a duplicate), or past the chain's head
 *   head_mismatch   ledger_chains' head names a seq or hash that the last
 *                   row does not have (a tail deleted or rewritten)
 *   anchor_mismatch an anchored row's hash differs from its anchor
 *   truncated       an anchored seq is past the chain's last row
 *   no_head         rows of a chain that has no head in ledger_chains
 * After a bad hash the check goes on from the stored hash, so one edit is
 * one fault, not a cascade. A seq gap that an archived month's span covers
 * (ledger_archived_spans, 017_archive.sql) is no fault: the chain goes on
 * from the span's last hash, as the rows in the archive file end. */
#ifndef TIPCAST_VERIFY_H
#define TIPCAST_VERIFY_H

#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

enum verify_fault {
    VERIFY_OK,
    VERIFY_EDITED,
    VERIFY_DELETED,
    VERIFY_INSERTED,
    VERIFY_HEAD_MISMATCH,
    VERIFY_ANCHOR_MISMATCH,
    VERIFY_TRUNCATED,
    VERIFY_NO_HEAD,
};

/* The stable name of a fault ("edited", ...; "ok"). */
const char *verify_fault_name(enum verify_fault f);

#define VERIFY_TEXT_MAX 160

/* One chain's result. first.* describe the first fault (kind VERIFY_OK:
 * none); row_id is 0 when the fault has no row (a missing one). */
struct verify_chain {
    int chain;
    int has_head;
    int64_t head_seq;
    int64_t rows, anchors, faults;
    int64_t archived; /* rows of archived months passed over (ledger_archived_spans) */
    struct {
        enum verify_fault kind;
        int64_t seq, row_id;
        char movement_id[VERIFY_TEXT_MAX], account[VERIFY_TEXT_MAX];
        char detail[VERIFY_TEXT_MAX * 2];
    } first;
};

struct verify_report {
    struct verify_chain *chains;
    size_t nchains;
    int64_t rows, anchors, faults;
};

/* Checks every chain (only_chain NULL) or the one *only_chain. Returns 0
 * with the report filled (free it with verify_report_free), or -1 with
 * err set (PostgreSQL unreachable, a query failed, memory). */
int verify_ledger(PGconn *c, const int *only_chain, struct verify_report *r, char *err, size_t errlen);

void verify_report_free(struct verify_report *r);

#endif
