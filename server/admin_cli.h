/* admin_cli.h - tipcast-admin's commands (admin_main.c dispatches).
 *
 * Each command gets tipcastd's settings (the same --config file, TIPCAST_*
 * environment and --name=value flags, given before the command name) and
 * its own arguments (argv[0] is the command's name). It returns the
 * process's exit status:
 *   0  done, and nothing is wrong
 *   1  done, and something is wrong (a mismatch, a tampered row): the
 *      report on stdout says what
 *   2  not done: bad arguments, or PostgreSQL or Redis unreachable (stderr)
 */
#ifndef TIPCAST_ADMIN_CLI_H
#define TIPCAST_ADMIN_CLI_H

#include <stdio.h>

#include "config.h"

#define ADMIN_EXIT_OK 0
#define ADMIN_EXIT_FOUND 1
#define ADMIN_EXIT_ERROR 2

/* admin_verify.c: verify-ledger (checks every chain and anchor) and
 * anchor-ledger (anchors the chain heads now). */
int admin_cmd_verify_ledger(const struct config *cfg, int argc, char **argv);
int admin_cmd_anchor_ledger(const struct config *cfg, int argc, char **argv);

/* admin_reconcile.c: reconcile. */
int admin_cmd_reconcile(const struct config *cfg, int argc, char **argv);

/* Prints "tipcast-admin COMMAND: message" on stderr and returns
 * ADMIN_EXIT_ERROR. */
__attribute__((format(printf, 2, 3))) int admin_cli_fail(const char *cmd, const char *fmt, ...);

#endif
