/* admin_reconcile.c - tipcast-admin reconcile: one reconciliation run
 * (settlement/recon.h) from the command line, its report on stdout.
 *
 *   tipcast-admin [settings] reconcile [--statement FILE] [--json]
 *                 [--no-store] [--idle-ms N]
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <libpq-fe.h>

#include "admin_cli.h"
#include "recon.h"

static void reconcile_usage(FILE *out)
{
    fputs("Usage: tipcast-admin [settings] reconcile [--statement FILE] [--json] [--no-store] [--idle-ms N]\n"
          "\n"
          "Compares, at one consistent cut and without pausing anything: every Redis\n"
          "wallet (minus the outbox entries not yet in PostgreSQL) with its ledger sum;\n"
          "creator, agency, platform and payout accounts with orders, refunds,\n"
          "recharges and withdrawals; every order's ledger rows with its split; the\n"
          "all-time leaderboards with the orders and refunds they count; the consumer\n"
          "groups' lag and pending entries; and, with --statement, the payment\n"
          "provider's statement (CSV payment_id,amount,time; amount in the currency's\n"
          "minor units) with the recharges paid in its time range.\n"
          "\n"
          "  --statement FILE  the provider's statement to compare\n"
          "  --json            the report as JSON (default: one line per finding)\n"
          "  --no-store        do not store the report (nor raise an alert)\n"
          "  --idle-ms N       a pending entry idle longer is a finding (default 300000)\n"
          "\n"
          "Exit status: 0 clean; 1 mismatches (listed); 2 not done.\n",
          out);
}

int admin_cmd_reconcile(const struct config *cfg, int argc, char **argv)
{
    struct recon_opts o = {.source = "cli",
                           .shards = cfg->wallet_shards,
                           .idle_ms = RECON_IDLE_MS_DEFAULT,
                           .store = 1,
                           .webhooks = config_webhooks_on(cfg)};
    int json = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            reconcile_usage(stdout);
            return ADMIN_EXIT_OK;
        } else if (strcmp(argv[i], "--json") == 0) {
            json = 1;
        } else if (strcmp(argv[i], "--no-store") == 0) {
            o.store = 0;
        } else if (strcmp(argv[i], "--statement") == 0 && i + 1 < argc) {
            o.statement = argv[++i];
        } else if (strcmp(argv[i], "--idle-ms") == 0 && i + 1 < argc) {
            char *end;
            long long v = strtoll(argv[++i], &end, 10);
            if (*end || v < 0)
                return admin_cli_fail(argv[0], "--idle-ms wants a number of milliseconds");
            o.idle_ms = v;
        } else {
            return admin_cli_fail(argv[0], "unknown argument %.64s (see --help)", argv[i]);
        }
    }
    char node[128] = "cli@";
    gethostname(node + 4, sizeof node - 5);
    node[sizeof node - 1] = '\0';
    o.node = node;

    PGconn *pg = PQconnectdb(cfg->pg_conninfo);
    if (PQstatus(pg) != CONNECTION_OK) {
        int rc = admin_cli_fail(argv[0], "postgresql: %s", PQerrorMessage(pg));
        PQfinish(pg);
        return rc;
    }
    struct rsync rc;
    if (rsync_connect(&rc, cfg->redis_host, cfg->redis_port, cfg->redis_cluster, 10) < 0) {
        int st = admin_cli_fail(argv[0], "%s", rc.err);
        rsync_close(&rc);
        PQfinish(pg);
        return st;
    }
    struct recon_result r;
    int st = recon_run(pg, &rc, &o, &r);
    rsync_close(&rc);
    PQfinish(pg);
    if (st == RECON_ERROR) {
        admin_cli_fail(argv[0], "%s", r.err);
        recon_result_free(&r);
        return ADMIN_EXIT_ERROR;
    }
    if (json)
        printf("%s\n", r.report);
    else
        recon_print_text(r.report, stdout);
    if (r.report_id)
        fprintf(stderr, "tipcast-admin reconcile: stored as report %lld\n", (long long)r.report_id);
    recon_result_free(&r);
    return st == RECON_CLEAN ? ADMIN_EXIT_OK : ADMIN_EXIT_FOUND;
}
