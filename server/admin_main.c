/* admin_main.c - tipcast-admin: the operator's commands (admin_cli.h),
 * run against the same PostgreSQL and Redis as tipcastd, with the same
 * settings.
 *
 *   tipcast-admin [--config FILE] [--name=value ...] COMMAND [ARGS]
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "admin_cli.h"
#include "version.h"

struct admin_cmd {
    const char *name;
    int (*run)(const struct config *cfg, int argc, char **argv);
    const char *summary;
};

static const struct admin_cmd admin_cmds[] = {
    {"reconcile", admin_cmd_reconcile,
     "compare Redis wallets, the ledger, earnings, leaderboards and a payment\n"
     "                   provider's statement at one cut; report every mismatch"},
    {"verify-ledger", admin_cmd_verify_ledger,
     "check every ledger hash chain and anchor; name the first bad row of each"},
    {"anchor-ledger", admin_cmd_anchor_ledger, "anchor every chain's head now (tipcastd does it daily)"},
};
#define ADMIN_NCMDS (sizeof admin_cmds / sizeof admin_cmds[0])

int admin_cli_fail(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "tipcast-admin %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return ADMIN_EXIT_ERROR;
}

static void admin_usage(FILE *out)
{
    fputs("Usage: tipcast-admin [--config FILE] [--name=value ...] COMMAND [ARGS]\n"
          "\n"
          "Runs one operator command against tipcastd's PostgreSQL and Redis. The\n"
          "settings before COMMAND are tipcastd's (its --config file, TIPCAST_*\n"
          "environment and --name=value flags; see tipcastd --help), so the command\n"
          "finds the same databases. `tipcast-admin COMMAND --help` describes one.\n"
          "\n"
          "Commands:\n",
          out);
    for (size_t i = 0; i < ADMIN_NCMDS; i++)
        fprintf(out, "  %-16s %s\n", admin_cmds[i].name, admin_cmds[i].summary);
    fputs("\n"
          "Exit status: 0 done and all is well; 1 done and something is wrong (the\n"
          "report says what); 2 not done (bad arguments, a database unreachable).\n",
          out);
}

int main(int argc, char **argv)
{
    /* The command is the first argument that is not a setting: settings
     * are --name=value, or --config FILE. */
    int c = 1;
    while (c < argc && argv[c][0] == '-') {
        if (strcmp(argv[c], "--help") == 0 || strcmp(argv[c], "-h") == 0) {
            admin_usage(stdout);
            return ADMIN_EXIT_OK;
        }
        if (strcmp(argv[c], "--version") == 0) {
            version_print(stdout, "tipcast-admin");
            return ADMIN_EXIT_OK;
        }
        c += strcmp(argv[c], "--config") == 0 ? 2 : 1;
    }
    if (c >= argc) {
        fputs("tipcast-admin: no command (see --help)\n", stderr);
        return ADMIN_EXIT_ERROR;
    }
    const struct admin_cmd *cmd = NULL;
    for (size_t i = 0; i < ADMIN_NCMDS; i++)
        if (strcmp(argv[c], admin_cmds[i].name) == 0)
            cmd = &admin_cmds[i];
    if (!cmd) {
        fprintf(stderr, "tipcast-admin: unknown command %.64s (see --help)\n", argv[c]);
        return ADMIN_EXIT_ERROR;
    }

    static struct config cfg;
    char err[512];
    config_defaults(&cfg);
    int rc = config_read(&cfg, c, argv, err, sizeof err);
    if (rc != 0) {
        if (rc > 0)
            return ADMIN_EXIT_OK;
        fprintf(stderr, "tipcast-admin: %s\n", err);
        return ADMIN_EXIT_ERROR;
    }
    return cmd->run(&cfg, argc - c, argv + c);
}
