/* admin_reconcile.c - tipcast-admin reconcile.
 * PLACEHOLDER: replaced by the reconciliation work (issue 12). */
#include "admin_cli.h"

int admin_cmd_reconcile(const struct config *cfg, int argc, char **argv)
{
    (void)cfg, (void)argc;
    return admin_cli_fail(argv[0], "not built yet");
}
