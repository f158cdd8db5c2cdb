/* fuzz_handshake.c - libFuzzer target for the upgrade's header checks
 * (server/handshake.h): whatever the header bytes, the checks must end in a
 * clear answer, never a crash or an overread (ASan/UBSan watch), and every
 * answer must keep the rules that matter:
 *
 * - a subprotocol list passes only in the plain form (token characters,
 *   commas, blanks), and then with the format of the first name lws would
 *   bind, which is never "http" (checked against a second reading of the
 *   list written apart from handshake.c's);
 * - a Host is pinned only when it is localhost or an address;
 * - with demo on and nothing listed, an Origin passes only when it is
 *   http(s):// and the Host, and the Host is pinned.
 *
 * Input: the first byte picks the settings (bit 0 demo, bit 1 one listed
 * origin "http://devbox:8080", bit 2 allowed-origins *); the rest is split at
 * '\n' into the subprotocol list, the Origin, the Host and the path (a
 * missing part is a missing header). See docs/operations.md, "Fuzzing". */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config.h"
#include "handshake.h"

#define PARTS 4

/* The second reading: cut at commas, trim blanks, and every element must be
 * a nonempty run of token characters that is not a number; the first of
 * "http" and ours found decides. */
static int ref_subprotocol(const char *list)
{
    static const char tchar[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-.^_`|~";
    if (strlen(list) >= HANDSHAKE_LIST_MAX)
        return -1;
    char *copy = strdup(list);
    if (!copy)
        abort();
    int picked = -2, bad = 0;
    char *rest = copy;
    for (;;) {
        char *comma = strchr(rest, ',');
        if (comma)
            *comma = '\0';
        char *b = rest + strspn(rest, " \t");
        size_t n = strlen(b);
        while (n > 0 && (b[n - 1] == ' ' || b[n - 1] == '\t'))
            b[--n] = '\0';
        if (n == 0 || strspn(b, tchar) != n || (strspn(b, "0123456789.") == n && b[0] != '.'))
            bad = 1;
        if (picked == -2) {
            if (strcmp(b, "http") == 0)
                picked = -1;
            else if (strcmp(b, "tipcast.v1.msgpack") == 0)
                picked = FMT_MSGPACK;
            else if (strcmp(b, "tipcast.v1.json") == 0)
                picked = FMT_JSON;
        }
        if (!comma)
            break;
        rest = comma + 1;
    }
    free(copy);
    return bad || picked < 0 ? -1 : picked;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t mode = data[0];
    /* A copy with a terminating NUL, cut into parts at '\n'. */
    char *buf = malloc(size);
    if (!buf)
        return 0;
    memcpy(buf, data + 1, size - 1);
    buf[size - 1] = '\0';
    char *part[PARTS] = {NULL};
    char *p = buf;
    for (int i = 0; i < PARTS && p; i++) {
        part[i] = p;
        p = strchr(p, '\n');
        if (p)
            *p++ = '\0';
    }

    if (part[0]) {
        int fmt = handshake_subprotocol(part[0]);
        if (fmt != -1 && fmt != FMT_MSGPACK && fmt != FMT_JSON)
            __builtin_trap();
        if (fmt != ref_subprotocol(part[0]))
            __builtin_trap();
    }

    const char *origin = part[1], *host = part[2];
    int pinned = handshake_host_pinned(host);
    if (pinned && !(host[0] == '[' || (host[0] >= '0' && host[0] <= '9') || strncasecmp(host, "localhost", 9) == 0))
        __builtin_trap();

    struct config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.demo = mode & 1;
    if (mode & 2) {
        strcpy(cfg.origins[0], "http://devbox:8080");
        cfg.origins_count = 1;
    }
    cfg.origins_any = (mode & 4) != 0;
    int allowed = handshake_origin_allowed(&cfg, origin, host);
    if (!origin && !allowed)
        __builtin_trap(); /* no Origin: always allowed */
    if (origin && allowed && !cfg.origins_any && !(cfg.origins_count && strcmp(origin, "http://devbox:8080") == 0)) {
        /* Only the demo rule can have let it through. */
        const char *rest = strncmp(origin, "https://", 8) == 0 ? origin + 8 : origin + 7;
        if (!cfg.demo || !host || !pinned || (strncmp(origin, "http://", 7) && strncmp(origin, "https://", 8)) ||
            strcasecmp(rest, host) != 0)
            __builtin_trap();
    }

    if (part[3] && handshake_path_ok(part[3]) != (strcmp(part[3], "/ws") == 0))
        __builtin_trap();
    free(buf);
    return 0;
}
