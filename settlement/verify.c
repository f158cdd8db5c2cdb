/* verify.c - the ledger's hash chains recomputed with OpenSSL (see verify.h). */
#include "verify.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

/* Rows fetched from the cursor at a time: the memory the check needs. */
#define VERIFY_FETCH 5000
#define HASH_LEN 32

const char *verify_fault_name(enum verify_fault f)
{
    static const char *const names[] = {"ok", "edited", "deleted", "inserted", "head_mismatch", "anchor_mismatch",
                                        "truncated", "no_head"};
    return (unsigned)f < sizeof names / sizeof names[0] ? names[f] : "?";
}

static void set_err(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    size_t n = strlen(err); /* libpq's messages end with a newline */
    while (n && (err[n - 1] == '\n' || err[n - 1] == ' '))
        err[--n] = '\0';
}

/* Runs a statement that returns no rows; 0 or -1 with err set. */
static int run(PGconn *c, const char *sql, char *err, size_t errlen)
{
    PGresult *res = PQexec(c, sql);
    int ok = PQresultStatus(res) == PGRES_COMMAND_OK;
    if (!ok)
        set_err(err, errlen, "%s: %s", sql, PQerrorMessage(c));
    PQclear(res);
    return ok ? 0 : -1;
}

/* bytea in PostgreSQL's hex output ("\x0a1b...") into 32 bytes; -1 when it
 * is not 32 bytes of that form (a hash of another length is a fault). */
static int parse_hash(const char *s, unsigned char out[HASH_LEN])
{
    if (!s || strncmp(s, "\\x", 2) != 0 || strlen(s) != 2 + 2 * HASH_LEN)
        return -1;
    for (int i = 0; i < HASH_LEN; i++) {
        unsigned v = 0;
        for (int k = 0; k < 2; k++) {
            char ch = s[2 + 2 * i + k];
            v <<= 4;
            if (ch >= '0' && ch <= '9')
                v |= (unsigned)(ch - '0');
            else if (ch >= 'a' && ch <= 'f')
                v |= (unsigned)(ch - 'a' + 10);
            else
                return -1;
        }
        out[i] = (unsigned char)v;
    }
    return 0;
}

/* One field of the canonical content: "<length>:<bytes>", or "~" for NULL. */
static void put_field(EVP_MD_CTX *md, const char *v)
{
    if (!v) {
        EVP_DigestUpdate(md, "~", 1);
        return;
    }
    char len[32];
    size_t n = strlen(v);
    int ln = snprintf(len, sizeof len, "%zu:", n);
    EVP_DigestUpdate(md, len, (size_t)ln);
    EVP_DigestUpdate(md, v, n);
}

/* A fault at `seq`: kept as the chain's first when no earlier one is. */
static void fault(struct verify_chain *ch, enum verify_fault kind, int64_t seq, PGresult *res, int row, const char *fmt,
                  ...) __attribute__((format(printf, 6, 7)));
static void fault(struct verify_chain *ch, enum verify_fault kind, int64_t seq, PGresult *res, int row, const char *fmt,
                  ...)
{
    ch->faults++;
    if (ch->first.kind != VERIFY_OK && ch->first.seq <= seq)
        return;
    ch->first.kind = kind;
    ch->first.seq = seq;
    ch->first.row_id = 0;
    ch->first.movement_id[0] = ch->first.account[0] = '\0';
    if (res && row >= 0) {
        ch->first.row_id = strtoll(PQgetvalue(res, row, 0), NULL, 10);
        snprintf(ch->first.movement_id, sizeof ch->first.movement_id, "%s", PQgetvalue(res, row, 2));
        snprintf(ch->first.account, sizeof ch->first.account, "%s", PQgetvalue(res, row, 3));
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ch->first.detail, sizeof ch->first.detail, fmt, ap);
    va_end(ap);
}

struct anchor {
    char day[16];
    int64_t seq;
    unsigned char hash[HASH_LEN];
    int bad_hash;
};

/* A run of consecutive seqs that left with an archived month
 * (ledger_archived_spans, 017_archive.sql), and the hash of its last row. */
struct span {
    int64_t first, last;
    unsigned char hash[HASH_LEN];
};

/* The chain's archived spans, in seq order; 0 or -1. */
static int load_spans(PGconn *c, const char *chain, struct span **spans, size_t *nspans, char *err, size_t errlen)
{
    const char *params[1] = {chain};
    PGresult *res = PQexecParams(c,
                                 "SELECT first_seq, last_seq, last_hash FROM ledger_archived_spans "
                                 "WHERE chain = $1::int ORDER BY first_seq",
                                 1, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        set_err(err, errlen, "reading chain %s's archived spans: %s", chain, PQerrorMessage(c));
        PQclear(res);
        return -1;
    }
    int n = PQntuples(res);
    *spans = calloc((size_t)n + 1, sizeof **spans);
    if (!*spans) {
        PQclear(res);
        set_err(err, errlen, "out of memory");
        return -1;
    }
    for (int i = 0; i < n; i++) {
        struct span *sp = &(*spans)[i];
        sp->first = strtoll(PQgetvalue(res, i, 0), NULL, 10);
        sp->last = strtoll(PQgetvalue(res, i, 1), NULL, 10);
        if (parse_hash(PQgetvalue(res, i, 2), sp->hash) < 0)
            memset(sp->hash, 0xff, HASH_LEN); /* matches no row: the next row's hash fails */
    }
    *nspans = (size_t)n;
    PQclear(res);
    return 0;
}

/* The chain's head and anchors; 0 or -1. */
static int load_chain(PGconn *c, struct verify_chain *ch, unsigned char head_hash[HASH_LEN], struct anchor **anchors,
                      size_t *nanchors, char *err, size_t errlen)
{
    char chain[16];
    snprintf(chain, sizeof chain, "%d", ch->chain);
    const char *params[1] = {chain};
    PGresult *res = PQexecParams(c, "SELECT seq, hash FROM ledger_chains WHERE chain = $1::int", 1, NULL, params,
                                 NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        set_err(err, errlen, "reading chain %d's head: %s", ch->chain, PQerrorMessage(c));
        PQclear(res);
        return -1;
    }
    ch->has_head = PQntuples(res) == 1;
    memset(head_hash, 0, HASH_LEN);
    if (ch->has_head) {
        ch->head_seq = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
        if (parse_hash(PQgetvalue(res, 0, 1), head_hash) < 0)
            memset(head_hash, 0xff, HASH_LEN); /* matches no row: a head mismatch */
    }
    PQclear(res);
    res = PQexecParams(c, "SELECT day::text, seq, hash FROM ledger_anchors WHERE chain = $1::int ORDER BY seq, day", 1,
                       NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        set_err(err, errlen, "reading chain %d's anchors: %s", ch->chain, PQerrorMessage(c));
        PQclear(res);
        return -1;
    }
    int n = PQntuples(res);
    *anchors = calloc((size_t)n + 1, sizeof **anchors);
    if (!*anchors) {
        PQclear(res);
        set_err(err, errlen, "out of memory");
        return -1;
    }
    for (int i = 0; i < n; i++) {
        struct anchor *a = &(*anchors)[i];
        snprintf(a->day, sizeof a->day, "%s", PQgetvalue(res, i, 0));
        a->seq = strtoll(PQgetvalue(res, i, 1), NULL, 10);
        a->bad_hash = parse_hash(PQgetvalue(res, i, 2), a->hash) < 0;
    }
    *nanchors = (size_t)n;
    ch->anchors = n;
    PQclear(res);
    return 0;
}

/* The archived spans that start where the chain is due (*expect) are passed
 * over: the chain goes on from each one's last hash, and an anchor inside
 * one can be checked only at its last row. */
static void skip_archived(struct verify_chain *ch, const struct span *spans, size_t nspans, size_t *si,
                          int64_t *expect, unsigned char prev[HASH_LEN], const struct anchor *anchors, size_t nanchors,
                          size_t *ai)
{
    for (; *si < nspans && spans[*si].first <= *expect; (*si)++) {
        const struct span *sp = &spans[*si];
        if (sp->first < *expect)
            continue; /* overlaps rows already walked: not a place in the chain */
        for (; *ai < nanchors && anchors[*ai].seq <= sp->last; (*ai)++)
            if (anchors[*ai].seq == sp->last && (anchors[*ai].bad_hash || memcmp(anchors[*ai].hash, sp->hash, HASH_LEN)))
                fault(ch, VERIFY_ANCHOR_MISMATCH, sp->last, NULL, -1,
                      "the anchor of %s has another hash than the archive's for this row", anchors[*ai].day);
        memcpy(prev, sp->hash, HASH_LEN);
        ch->archived += sp->last - sp->first + 1;
        *expect = sp->last + 1;
    }
}

/* Streams one chain's rows in seq order and checks them. */
static int check_chain(PGconn *c, struct verify_chain *ch, char *err, size_t errlen)
{
    unsigned char head_hash[HASH_LEN], prev[HASH_LEN] = {0}, stored[HASH_LEN], calc[HASH_LEN];
    struct anchor *anchors = NULL;
    struct span *spans = NULL;
    size_t nanchors = 0, ai = 0, nspans = 0, si = 0;
    if (load_chain(c, ch, head_hash, &anchors, &nanchors, err, errlen) < 0)
        return -1;
    /* An anchor of the empty chain names seq 0 and the zero hash. */
    for (; ai < nanchors && anchors[ai].seq <= 0; ai++)
        if (anchors[ai].seq < 0 || anchors[ai].bad_hash || memcmp(anchors[ai].hash, prev, HASH_LEN) != 0)
            fault(ch, VERIFY_ANCHOR_MISMATCH, anchors[ai].seq, NULL, -1, "anchor of %s names seq %" PRId64,
                  anchors[ai].day, anchors[ai].seq);

    char chain[16], sql[512];
    snprintf(chain, sizeof chain, "%d", ch->chain);
    const char *params[1] = {chain};
    if (load_spans(c, chain, &spans, &nspans, err, errlen) < 0) {
        free(anchors);
        return -1;
    }
    /* created_at as integer microseconds, as the content has it. */
    PGresult *res = PQexecParams(c,
                                 "DECLARE verify_rows NO SCROLL CURSOR FOR "
                                 "SELECT id, seq, movement_id, account, delta, kind, note, "
                                 "(extract(epoch FROM created_at) * 1000000)::bigint, entry, hash "
                                 "FROM ledger WHERE chain = $1::int ORDER BY seq, id",
                                 1, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        set_err(err, errlen, "reading chain %d: %s", ch->chain, PQerrorMessage(c));
        PQclear(res);
        free(anchors);
        free(spans);
        return -1;
    }
    PQclear(res);

    EVP_MD_CTX *md = EVP_MD_CTX_new();
    int64_t expect = 1, last_seq = 0;
    int rc = 0, first_row = 1;
    snprintf(sql, sizeof sql, "FETCH %d FROM verify_rows", VERIFY_FETCH);
    for (;;) {
        res = PQexec(c, sql);
        if (PQresultStatus(res) != PGRES_TUPLES_OK) {
            set_err(err, errlen, "reading chain %d: %s", ch->chain, PQerrorMessage(c));
            rc = -1;
            break;
        }
        int n = PQntuples(res);
        for (int i = 0; i < n; i++) {
            int64_t seq = strtoll(PQgetvalue(res, i, 1), NULL, 10);
            ch->rows++;
            if (first_row && !ch->has_head)
                fault(ch, VERIFY_NO_HEAD, seq, res, i, "chain %d has rows but no head in ledger_chains", ch->chain);
            first_row = 0;
            if (seq < expect) {
                /* Not a place in the chain: not chained on either. */
                fault(ch, VERIFY_INSERTED, seq, res, i, "seq %" PRId64 " where %" PRId64 " was due (a duplicate "
                      "or a row out of place)", seq, expect);
                continue;
            }
            if (seq > expect)
                skip_archived(ch, spans, nspans, &si, &expect, prev, anchors, nanchors, &ai);
            int gap = seq > expect;
            if (gap)
                fault(ch, VERIFY_DELETED, expect, res, i, "seq %" PRId64 "..%" PRId64 " missing before this row",
                      expect, seq - 1);
            if (parse_hash(PQgetvalue(res, i, 9), stored) < 0)
                memset(stored, 0, HASH_LEN);
            if (ch->has_head && seq > ch->head_seq)
                fault(ch, VERIFY_INSERTED, seq, res, i, "past the chain's head (seq %" PRId64 ")", ch->head_seq);
            /* SHA-256(prev || content); after a gap the predecessor is gone,
             * and the gap is the fault already. */
            if (!gap) {
                unsigned int len = 0;
                EVP_DigestInit_ex(md, EVP_sha256(), NULL);
                EVP_DigestUpdate(md, prev, HASH_LEN);
                put_field(md, chain);
                put_field(md, PQgetvalue(res, i, 1));
                for (int col = 2; col <= 8; col++)
                    put_field(md, PQgetisnull(res, i, col) ? NULL : PQgetvalue(res, i, col));
                EVP_DigestFinal_ex(md, calc, &len);
                if (memcmp(calc, stored, HASH_LEN) != 0)
                    fault(ch, VERIFY_EDITED, seq, res, i, "hash mismatch: the row is not what was chained");
            }
            for (; ai < nanchors && anchors[ai].seq <= seq; ai++)
                if (anchors[ai].seq == seq && (anchors[ai].bad_hash || memcmp(anchors[ai].hash, stored, HASH_LEN)))
                    fault(ch, VERIFY_ANCHOR_MISMATCH, seq, res, i, "the anchor of %s has another hash for this row",
                          anchors[ai].day);
            memcpy(prev, stored, HASH_LEN);
            expect = seq + 1;
            last_seq = seq;
        }
        PQclear(res);
        if (n < VERIFY_FETCH)
            break;
    }
    EVP_MD_CTX_free(md);
    if (rc == 0 && run(c, "CLOSE verify_rows", err, errlen) < 0)
        rc = -1;
    if (rc == 0) {
        /* Archived rows may end the chain: its head is then the last span's. */
        skip_archived(ch, spans, nspans, &si, &expect, prev, anchors, nanchors, &ai);
        last_seq = expect - 1;
        if (ch->has_head && ch->head_seq > last_seq)
            fault(ch, VERIFY_HEAD_MISMATCH, last_seq + 1, NULL, -1,
                  "the head names seq %" PRId64 ", the rows end at %" PRId64, ch->head_seq, last_seq);
        else if (ch->has_head && ch->head_seq == last_seq && memcmp(head_hash, prev, HASH_LEN) != 0)
            fault(ch, VERIFY_HEAD_MISMATCH, last_seq, NULL, -1, "the head's hash is not the last row's");
        for (; ai < nanchors; ai++)
            fault(ch, VERIFY_TRUNCATED, last_seq + 1, NULL, -1,
                  "the anchor of %s names seq %" PRId64 ", the rows end at %" PRId64, anchors[ai].day, anchors[ai].seq,
                  last_seq);
    }
    free(anchors);
    free(spans);
    return rc;
}

/* Every chain that has rows, a head or an anchor, in order. The rows'
 * chains by a skip scan over UNIQUE (chain, seq): one index probe per
 * chain, not a scan of the ledger. */
static int list_chains(PGconn *c, struct verify_report *r, char *err, size_t errlen)
{
    PGresult *res = PQexec(c, "WITH RECURSIVE k AS ("
                              "  SELECT min(chain) AS chain FROM ledger"
                              "  UNION ALL"
                              "  SELECT (SELECT min(chain) FROM ledger WHERE chain > k.chain) FROM k"
                              "  WHERE k.chain IS NOT NULL) "
                              "SELECT chain FROM k WHERE chain IS NOT NULL "
                              "UNION SELECT chain FROM ledger_chains UNION SELECT chain FROM ledger_anchors "
                              "ORDER BY 1");
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        set_err(err, errlen, "listing the chains: %s", PQerrorMessage(c));
        PQclear(res);
        return -1;
    }
    int n = PQntuples(res);
    r->chains = calloc((size_t)n + 1, sizeof *r->chains);
    if (!r->chains) {
        PQclear(res);
        set_err(err, errlen, "out of memory");
        return -1;
    }
    for (int i = 0; i < n; i++)
        r->chains[r->nchains++].chain = (int)strtol(PQgetvalue(res, i, 0), NULL, 10);
    PQclear(res);
    return 0;
}

int verify_ledger(PGconn *c, const int *only_chain, struct verify_report *r, char *err, size_t errlen)
{
    memset(r, 0, sizeof *r);
    if (PQstatus(c) != CONNECTION_OK) {
        set_err(err, errlen, "PostgreSQL: %s", PQerrorMessage(c));
        return -1;
    }
    /* The texts hashed are the database's UTF-8 bytes. */
    if (PQsetClientEncoding(c, "UTF8") != 0) {
        set_err(err, errlen, "PostgreSQL: cannot read UTF-8: %s", PQerrorMessage(c));
        return -1;
    }
    if (run(c, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", err, errlen) < 0)
        return -1;
    int rc = 0;
    if (only_chain) {
        r->chains = calloc(1, sizeof *r->chains);
        if (!r->chains) {
            set_err(err, errlen, "out of memory");
            rc = -1;
        } else {
            r->chains[0].chain = *only_chain;
            r->nchains = 1;
        }
    } else {
        rc = list_chains(c, r, err, errlen);
    }
    for (size_t i = 0; rc == 0 && i < r->nchains; i++) {
        rc = check_chain(c, &r->chains[i], err, errlen);
        r->rows += r->chains[i].rows;
        r->anchors += r->chains[i].anchors;
        r->faults += r->chains[i].faults;
    }
    PQclear(PQexec(c, rc == 0 ? "COMMIT" : "ROLLBACK"));
    if (rc < 0)
        verify_report_free(r);
    return rc;
}

void verify_report_free(struct verify_report *r)
{
    free(r->chains);
    memset(r, 0, sizeof *r);
}
