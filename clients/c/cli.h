/* cli.h - what the tipcast CLI's parts share: its options, its exit codes,
 * and the admin API side (cli_admin.c). */
#ifndef TIPCAST_CLI_H
#define TIPCAST_CLI_H

#include <stdint.h>

/* The exit codes: stable, documented in --help and clients/c/README.md. */
enum {
    EXIT_OK = 0,
    EXIT_REFUSED = 1,     /* the server answered with an error (its code is printed) */
    EXIT_USAGE = 2,       /* bad command line */
    EXIT_UNREACHABLE = 3, /* cannot connect, connection lost, or the server is unavailable */
    EXIT_AUTH = 4,        /* the token was refused (missing, invalid, expired) */
    EXIT_TIMEOUT = 5,     /* no answer in time */
};

struct cli {
    const char *url, *token, *admin;
    int json;
    double timeout_s; /* < 0: not given */
    /* Command options; NULL / -1 when not given. */
    const char *combo, *id, *text, *reason, *state, *creator, *reference;
    int64_t count, after, amount, ttl;
    int pos_n;
    char **pos; /* the positional arguments: the command and its operands */
};

int cli_admin(struct cli *o);
void cli_err(struct cli *o, const char *code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* s as a JSON string (with quotes) into a malloc'd string. */
char *cli_json_str(const char *s);

#endif
