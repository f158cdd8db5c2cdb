/* admin_verify.c - tipcast-admin verify-ledger and anchor-ledger: the
 * ledger's hash chains checked (settlement/verify.h) and their heads
 * anchored (tipcast_ledger_anchor, 006_ledger_chain.sql). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <libpq-fe.h>

#include "admin_cli.h"
#include "verify.h"

static void verify_usage(FILE *out)
{
    fputs("Usage: tipcast-admin [SETTINGS] verify-ledger [--json] [--chain N]\n"
          "\n"
          "Recomputes every ledger row's SHA-256 hash chain (docs/settlement.md,\n"
          "\"Tamper-evident ledger\") in one consistent read-only snapshot, while\n"
          "tipcastd keeps writing, and compares the chains with their heads\n"
          "(ledger_chains) and the daily anchors (ledger_anchors). Reports, per\n"
          "chain, the rows and anchors checked and the first bad row: its chain,\n"
          "seq, ledger id, movement, account and the kind of fault:\n"
          "  edited           hash mismatch: a field of the row was changed\n"
          "  deleted          a seq gap: rows are missing\n"
          "  inserted         a row out of place: a duplicate seq, or past the head\n"
          "  head_mismatch    the head names a row the chain does not end with\n"
          "  anchor_mismatch  an anchored row's hash differs from the anchor\n"
          "  truncated        an anchored row is gone: the tail was cut\n"
          "  no_head          rows of a chain that has no head\n"
          "\n"
          "Options:\n"
          "  --json      one JSON object instead of text\n"
          "  --chain N   check chain N only (-1: rows of SQL functions; k: outbox shard k)\n"
          "  --help      this text\n"
          "\n"
          "Exit status: 0 every chain is intact; 1 a chain is tampered (the report\n"
          "says where); 2 not done (bad arguments, PostgreSQL unreachable).\n",
          out);
}

static void anchor_usage(FILE *out)
{
    fputs("Usage: tipcast-admin [SETTINGS] anchor-ledger [--day YYYY-MM-DD]\n"
          "\n"
          "Anchors every ledger chain's current head for the day (default: today in\n"
          "UTC) in ledger_anchors, as tipcastd does at start and after each UTC\n"
          "midnight, and prints that day's anchors, one line each:\n"
          "  DAY chain N seq S hash HEX anchored_at TIME\n"
          "A chain anchored that day already keeps its anchor. Keep the printed\n"
          "anchors (or the ledger.anchored webhook) outside the database: anchors\n"
          "kept only in it can be rewritten by a superuser with the ledger.\n"
          "\n"
          "Options:\n"
          "  --day YYYY-MM-DD  the day to anchor under\n"
          "  --help            this text\n"
          "\n"
          "Exit status: 0 anchored; 2 not done (bad arguments, PostgreSQL unreachable).\n",
          out);
}

/* The database, in UTF-8; NULL (with the failure printed) when unreachable. */
static PGconn *connect_pg(const struct config *cfg, const char *cmd)
{
    PGconn *c = PQconnectdb(cfg->pg_conninfo);
    if (PQstatus(c) != CONNECTION_OK) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", PQerrorMessage(c));
        msg[strcspn(msg, "\n")] = '\0';
        admin_cli_fail(cmd, "PostgreSQL: %s", msg);
        PQfinish(c);
        return NULL;
    }
    return c;
}

static void print_text(const struct verify_report *r)
{
    for (size_t i = 0; i < r->nchains; i++) {
        const struct verify_chain *ch = &r->chains[i];
        printf("chain %d: %" PRId64 " rows, ", ch->chain, ch->rows);
        if (ch->archived)
            printf("%" PRId64 " archived, ", ch->archived);
        if (ch->has_head)
            printf("head seq %" PRId64 ", ", ch->head_seq);
        else
            printf("no head, ");
        printf("%" PRId64 " anchors: ", ch->anchors);
        if (ch->first.kind == VERIFY_OK) {
            puts("ok");
            continue;
        }
        printf("TAMPERED at chain %d seq %" PRId64 " (ledger id %" PRId64 ", movement %s, account %s): %s: %s",
               ch->chain, ch->first.seq, ch->first.row_id, ch->first.movement_id[0] ? ch->first.movement_id : "-",
               ch->first.account[0] ? ch->first.account : "-", verify_fault_name(ch->first.kind), ch->first.detail);
        if (ch->faults > 1)
            printf(" (%" PRId64 " faults in this chain)", ch->faults);
        putchar('\n');
    }
    printf("%zu chains, %" PRId64 " rows, %" PRId64 " anchors checked: %s\n", r->nchains, r->rows, r->anchors,
           r->faults ? "TAMPERED" : "intact");
}

static void print_json(const struct verify_report *r)
{
    json_t *chains = json_array();
    for (size_t i = 0; i < r->nchains; i++) {
        const struct verify_chain *ch = &r->chains[i];
        json_t *first = json_null();
        if (ch->first.kind != VERIFY_OK)
            first = json_pack("{s:I, s:I, s:I, s:s, s:s, s:s, s:s}", "chain", (json_int_t)ch->chain, "seq",
                              (json_int_t)ch->first.seq, "id", (json_int_t)ch->first.row_id, "movement_id",
                              ch->first.movement_id, "account", ch->first.account, "kind",
                              verify_fault_name(ch->first.kind), "detail", ch->first.detail);
        json_t *head = ch->has_head ? json_integer(ch->head_seq) : json_null();
        json_array_append_new(chains, json_pack("{s:i, s:I, s:I, s:o, s:I, s:I, s:o}", "chain", ch->chain, "rows",
                                                (json_int_t)ch->rows, "archived", (json_int_t)ch->archived,
                                                "head_seq", head, "anchors", (json_int_t)ch->anchors, "faults",
                                                (json_int_t)ch->faults, "first", first));
    }
    json_t *out = json_pack("{s:b, s:I, s:I, s:I, s:o}", "ok", r->faults == 0, "rows", (json_int_t)r->rows, "anchors",
                            (json_int_t)r->anchors, "faults", (json_int_t)r->faults, "chains", chains);
    char *s = out ? json_dumps(out, JSON_COMPACT) : NULL;
    if (s)
        puts(s);
    free(s);
    json_decref(out);
}

/* An int of [-1, INT32_MAX) from text: 0, or -1 when it is not one. */
static int parse_chain(const char *s, int *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (!*s || *end || v < -1 || v >= 2147483647L)
        return -1;
    *out = (int)v;
    return 0;
}

int admin_cmd_verify_ledger(const struct config *cfg, int argc, char **argv)
{
    int json = 0, chain, *only = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            verify_usage(stdout);
            return ADMIN_EXIT_OK;
        } else if (strcmp(argv[i], "--json") == 0) {
            json = 1;
        } else if (strcmp(argv[i], "--chain") == 0 && i + 1 < argc) {
            if (parse_chain(argv[++i], &chain) < 0)
                return admin_cli_fail(argv[0], "--chain: %.32s is not a chain (-1 or an outbox shard)", argv[i]);
            only = &chain;
        } else {
            return admin_cli_fail(argv[0], "unknown argument %.64s (see --help)", argv[i]);
        }
    }
    PGconn *c = connect_pg(cfg, argv[0]);
    if (!c)
        return ADMIN_EXIT_ERROR;
    struct verify_report r;
    char err[512];
    int rc = verify_ledger(c, only, &r, err, sizeof err);
    PQfinish(c);
    if (rc < 0)
        return admin_cli_fail(argv[0], "%s", err);
    if (json)
        print_json(&r);
    else
        print_text(&r);
    int status = r.faults ? ADMIN_EXIT_FOUND : ADMIN_EXIT_OK;
    verify_report_free(&r);
    return status;
}

int admin_cmd_anchor_ledger(const struct config *cfg, int argc, char **argv)
{
    const char *day = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            anchor_usage(stdout);
            return ADMIN_EXIT_OK;
        } else if (strcmp(argv[i], "--day") == 0 && i + 1 < argc) {
            day = argv[++i];
            if (strlen(day) != 10 || strspn(day, "0123456789-") != 10 || day[4] != '-' || day[7] != '-')
                return admin_cli_fail(argv[0], "--day: %.32s is not YYYY-MM-DD", day);
        } else {
            return admin_cli_fail(argv[0], "unknown argument %.64s (see --help)", argv[i]);
        }
    }
    PGconn *c = connect_pg(cfg, argv[0]);
    if (!c)
        return ADMIN_EXIT_ERROR;
    const char *params[1] = {day};
    PGresult *res = PQexecParams(c,
                                 "SELECT day::text, chain, seq, encode(hash, 'hex'), "
                                 "to_char(anchored_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') "
                                 "FROM tipcast_ledger_anchor(coalesce($1::date, (now() AT TIME ZONE 'UTC')::date))",
                                 1, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", PQerrorMessage(c));
        msg[strcspn(msg, "\n")] = '\0';
        PQclear(res);
        PQfinish(c);
        return admin_cli_fail(argv[0], "%s", msg);
    }
    for (int i = 0; i < PQntuples(res); i++)
        printf("%s chain %s seq %s hash %s anchored_at %s\n", PQgetvalue(res, i, 0), PQgetvalue(res, i, 1),
               PQgetvalue(res, i, 2), PQgetvalue(res, i, 3), PQgetvalue(res, i, 4));
    PQclear(res);
    PQfinish(c);
    return ADMIN_EXIT_OK;
}
