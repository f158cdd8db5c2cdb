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
 * missing part is a missing header).
 *
 * With bit 7 of the first byte set, the rest goes to libwebsockets itself
 * instead, as the bytes a client sent on a new connection: the whole request
 * (bit 6 clear), or the value of a Sec-WebSocket-Protocol header in an
 * otherwise well-formed upgrade (bit 6 set). lws parses it, and whenever it
 * binds a protocol, the name it bound must be the one handshake_subprotocol
 * picked from the header as lws handed it over (or that one refused the
 * list): the rule of handshake.c checked against lws's own. See
 * docs/operations.md, "Fuzzing". */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <libwebsockets.h>

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

/* ---- Through lws ---------------------------------------------------------------- */

/* What the connection under test went through. */
static struct {
    int confirmed; /* CONFIRM_UPGRADE came */
    int expected;  /* handshake_subprotocol's pick there: a format, or -1 */
    int destroyed; /* lws has freed the connection */
} seen;

/* The protocols' ids: the format for ours, PROTO_HTTP for lws's http. */
#define PROTO_HTTP 2

static int fuzz_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len)
{
    switch (reason) {
    case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE: {
        char list[HANDSHAKE_LIST_MAX];
        int n = lws_hdr_total_length(wsi, WSI_TOKEN_PROTOCOL);
        seen.confirmed = 1;
        seen.expected = -1;
        if (n > 0 && n < (int)sizeof list && lws_hdr_copy(wsi, list, sizeof list, WSI_TOKEN_PROTOCOL) >= 0)
            seen.expected = handshake_subprotocol(list);
        return 0; /* let lws go on and pick, to compare */
    }
    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION: {
        /* lws has bound the protocol it picked. A list we refuse is no
         * matter (tipcastd stops it at CONFIRM_UPGRADE); a list we pass must
         * have been bound to the very protocol we named. */
        unsigned int id = lws_get_protocol(wsi)->id;
        if (!seen.confirmed || (seen.expected >= 0 && id != (unsigned int)seen.expected))
            __builtin_trap();
        return 1; /* no need to finish the handshake */
    }
    case LWS_CALLBACK_HTTP:
        return -1; /* plain requests are not under test here */
    case LWS_CALLBACK_WSI_DESTROY:
        seen.destroyed = 1;
        return 0;
    default:
        return lws_callback_http_dummy(wsi, reason, user, in, len);
    }
}

static struct lws_protocols fuzz_protocols[] = {
    {"http", fuzz_callback, 0, 0, PROTO_HTTP, NULL, 0},
    {"tipcast.v1.msgpack", fuzz_callback, 0, 0, FMT_MSGPACK, NULL, 0},
    {"tipcast.v1.json", fuzz_callback, 0, 0, FMT_JSON, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

static struct lws_context *ctx;

static struct lws_vhost *fuzz_vhost(void)
{
    if (!ctx) {
        struct lws_context_creation_info info;
        memset(&info, 0, sizeof info);
        info.port = CONTEXT_PORT_NO_LISTEN_SERVER;
        info.protocols = fuzz_protocols;
        info.options = LWS_SERVER_OPTION_DISABLE_IPV6;
        lws_set_log_level(0, NULL);
        ctx = lws_create_context(&info);
        if (!ctx)
            abort();
    }
    return lws_get_vhost_by_name(ctx, "default");
}

/* One connection: lws adopts one end of a socket pair with `bytes` as what
 * was read from it, the other end says no more (EOF), and lws is run until
 * it has let the connection go. */
static void through_lws(const uint8_t *bytes, size_t n)
{
    int sv[2];
    struct lws_vhost *vh = fuzz_vhost();
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
        abort();
    memset(&seen, 0, sizeof seen);
    shutdown(sv[1], SHUT_WR);
    /* On failure lws has closed sv[0] already. */
    if (lws_adopt_socket_vhost_readbuf(vh, sv[0], (const char *)bytes, n)) {
        for (int i = 0; i < 64 && !seen.destroyed; i++)
            lws_service(ctx, 0);
        if (!seen.destroyed)
            __builtin_trap(); /* lws held a connection that had said all it would */
    }
    close(sv[1]);
}

static void lws_mode(uint8_t mode, const uint8_t *data, size_t size)
{
    static const char head[] = "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                               "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                               "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: ";
    if (!(mode & 0x40)) {
        through_lws(data, size);
        return;
    }
    uint8_t *req = malloc(sizeof head - 1 + size + 4);
    if (!req)
        return;
    memcpy(req, head, sizeof head - 1);
    memcpy(req + sizeof head - 1, data, size);
    memcpy(req + sizeof head - 1 + size, "\r\n\r\n", 4);
    through_lws(req, sizeof head - 1 + size + 4);
    free(req);
}

/* ---- The pure functions --------------------------------------------------- */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t mode = data[0];
    if (mode & 0x80) {
        lws_mode(mode, data + 1, size - 1);
        return 0;
    }
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
