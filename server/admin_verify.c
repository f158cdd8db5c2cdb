/* admin_verify.c - tipcast-admin verify-ledger and anchor-ledger.
 * PLACEHOLDER: replaced by the ledger-chain work (issue 12). */
#include "admin_cli.h"

int admin_cmd_verify_ledger(const struct config *cfg, int argc, char **argv)
{
    (void)cfg, (void)argc;
    return admin_cli_fail(argv[0], "not built yet");
}

int admin_cmd_anchor_ledger(const struct config *cfg, int argc, char **argv)
{
    (void)cfg, (void)argc;
    return admin_cli_fail(argv[0], "not built yet");
}
