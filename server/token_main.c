/* token_main.c - tipcast-token: mints an HS256 token the way the platform's
 * backend would, for demos, scripts and manual testing of tipcastd.
 *
 * Exit status: 0 with the token on stdout, 2 with a message on stderr.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "jwt.h"
#include "version.h"

/* A year either way: long enough for any demo, and a negative TTL mints an
 * already expired token for testing the server's refusal. */
#define TOKEN_TTL_MAX_S (366LL * 24 * 3600)

static void token_usage(FILE *out)
{
    fprintf(out,
            "Usage: tipcast-token --secret SECRET [--kid KID] --sub USER\n"
            "                     [--role ROLE] [--ttl SECONDS]\n"
            "\n"
            "Prints an HS256 JSON Web Token that tipcastd accepts when its jwt-secret\n"
            "holds SECRET (as KID:SECRET when --kid is given), followed by a newline.\n"
            "\n"
            "  --secret SECRET  the HMAC key; the same bytes as in tipcastd's jwt-secret\n"
            "  --kid KID        put \"kid\":KID in the header, so that tipcastd picks\n"
            "                   the secret configured as KID:SECRET\n"
            "  --sub USER       the user id: 1..64 characters of A-Z a-z 0-9 _ . -\n"
            "  --role ROLE      viewer (default), creator or admin; a creator owns the\n"
            "                   room named after their user id. The staff roles finance,\n"
            "                   operations, support and auditor are for the admin API.\n"
            "                   overlay: an OBS overlay's read-only token for the room\n"
            "                   USER (the token also carries \"room\":USER)\n"
            "  --ttl SECONDS    lifetime from now, default 3600; a negative value mints\n"
            "                   an already expired token (at most %lld either way)\n"
            "  --help           print this text\n"
            "  --version        print the version\n"
            "\n"
            "Every option also takes the --name=value form.\n",
            TOKEN_TTL_MAX_S);
}

__attribute__((format(printf, 1, 2)))
static int token_fail(const char *fmt, ...)
{
    va_list ap;

    fputs("tipcast-token: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs(" (see --help)\n", stderr);
    return 2;
}

/* Returns the value of option `name` at argv[*i] ("--name=value" or
 * "--name value"), advancing *i past what it used; NULL when argv[*i] is not
 * that option. Sets *missing when the option has no value. */
static const char *token_opt(int argc, char **argv, int *i, const char *name, int *missing)
{
    const char *arg = argv[*i];
    size_t n = strlen(name);

    if (strncmp(arg, name, n) != 0)
        return NULL;
    if (arg[n] == '=')
        return arg + n + 1;
    if (arg[n] != '\0')
        return NULL;
    if (*i + 1 >= argc) {
        *missing = 1;
        return NULL;
    }
    (*i)++;
    return argv[*i];
}

int main(int argc, char **argv)
{
    const char *secret = NULL, *kid = NULL, *sub = NULL;
    const char *role_arg = "viewer", *ttl_arg = NULL;
    enum role role = ROLE_VIEWER;
    long long ttl = 3600;
    char token[JWT_MAX_BYTES + 1];
    int n;

    for (int i = 1; i < argc; i++) {
        int missing = 0;
        const char *v;

        if (strcmp(argv[i], "--version") == 0) {
            version_print(stdout, "tipcast-token");
            return 0;
        }
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            token_usage(stdout);
            return 0;
        }
        if ((v = token_opt(argc, argv, &i, "--secret", &missing)) != NULL)
            secret = v;
        else if ((v = token_opt(argc, argv, &i, "--kid", &missing)) != NULL)
            kid = v;
        else if ((v = token_opt(argc, argv, &i, "--sub", &missing)) != NULL)
            sub = v;
        else if ((v = token_opt(argc, argv, &i, "--role", &missing)) != NULL)
            role_arg = v;
        else if ((v = token_opt(argc, argv, &i, "--ttl", &missing)) != NULL)
            ttl_arg = v;
        else if (missing)
            return token_fail("%s needs a value", argv[i]);
        else
            return token_fail("unknown argument %.64s", argv[i]);
    }

    if (secret == NULL || secret[0] == '\0')
        return token_fail("--secret is required and may not be empty");
    if (sub == NULL)
        return token_fail("--sub is required");
    if (!id_valid(sub, strlen(sub)))
        return token_fail("--sub: %.64s is not a user id (1..64 of A-Z a-z 0-9 _ . -)", sub);
    if (kid != NULL && (kid[0] == '\0' || strlen(kid) >= sizeof(((struct config_secret *)0)->kid)))
        return token_fail("--kid: 1..%zu characters",
                          sizeof(((struct config_secret *)0)->kid) - 1);
    int parsed = role_parse(role_arg, strlen(role_arg));
    if (parsed < 0)
        return token_fail("--role: %.64s is not viewer, creator, admin, finance, operations, support or auditor",
                          role_arg);
    role = (enum role)parsed;
    if (ttl_arg != NULL) {
        char *end = NULL;

        errno = 0;
        ttl = strtoll(ttl_arg, &end, 10);
        if (ttl_arg[0] == '\0' || *end != '\0' || errno == ERANGE)
            return token_fail("--ttl: %.64s is not a whole number of seconds", ttl_arg);
        if (ttl < -TOKEN_TTL_MAX_S || ttl > TOKEN_TTL_MAX_S)
            return token_fail("--ttl: %lld is out of range %lld..%lld", ttl, -TOKEN_TTL_MAX_S,
                              TOKEN_TTL_MAX_S);
    }

    n = jwt_sign(secret, strlen(secret), kid, sub, role, (int64_t)time(NULL) + ttl, token,
                 sizeof(token));
    if (n < 0)
        return token_fail("could not sign the token");
    if (printf("%s\n", token) < 0 || fflush(stdout) != 0)
        return token_fail("cannot write the token: %s", strerror(errno));
    return 0;
}
