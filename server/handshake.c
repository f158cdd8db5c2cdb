/* handshake.c - the upgrade's header checks (see handshake.h). */
#include "handshake.h"

#include <arpa/inet.h>
#include <string.h>
#include <strings.h>

int handshake_path_ok(const char *path) { return path && strcmp(path, "/ws") == 0; }

/* RFC 7230's tchar. lws 4.1 reads a list of these as we do: none of them is
 * one of its delimiters, a quote or blank. */
static int is_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return 1;
    return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* lws's tokenizer reads 12 or 1.5 as a number and then refuses the whole
 * list: refused here too, so that the two agree on every list passed. */
static int is_number(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((s[i] < '0' || s[i] > '9') && s[i] != '.')
            return 0;
    return s[0] >= '0' && s[0] <= '9';
}

/* The names lws can bind (server.c's protocols[], in lws's terms the
 * vhost's protocols) and what each means here. */
static const struct {
    const char *name;
    int fmt;
} bindable[] = {
    {"http", -1},
    {"tipcast.v1.msgpack", FMT_MSGPACK},
    {"tipcast.v1.json", FMT_JSON},
};

int handshake_subprotocol(const char *list)
{
    if (!list || strlen(list) >= HANDSHAKE_LIST_MAX)
        return -1;
    int picked = -2; /* no bindable name yet */
    const char *p = list;
    for (;;) {
        while (*p == ' ' || *p == '\t')
            p++;
        const char *name = p;
        while (is_tchar((unsigned char)*p))
            p++;
        size_t n = (size_t)(p - name);
        if (n == 0 || is_number(name, n))
            return -1; /* an empty element, a byte that is not a name's, a number */
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p != ',' && *p != '\0')
            return -1;
        /* The whole list is read even after the pick, so that lws never sees
         * one we would call malformed. */
        for (size_t i = 0; picked == -2 && i < sizeof bindable / sizeof bindable[0]; i++)
            if (strlen(bindable[i].name) == n && memcmp(bindable[i].name, name, n) == 0)
                picked = bindable[i].fmt;
        if (*p == '\0')
            break;
        p++;
    }
    return picked < 0 ? -1 : picked;
}

/* The host part of a Host value into out (brackets of an IPv6 address
 * kept), after checking that what follows it is nothing or :digits.
 * Returns 0, or -1 when the value is not of that form or too long. */
static int host_name(const char *host, char *out, size_t size)
{
    const char *end;
    if (host[0] == '[') {
        end = strchr(host, ']');
        if (!end)
            return -1;
        end++;
    } else {
        end = host + strcspn(host, ":");
    }
    size_t n = (size_t)(end - host);
    if (n == 0 || n >= size)
        return -1;
    if (*end == ':') {
        const char *d = end + 1;
        if (!*d)
            return -1;
        for (; *d; d++)
            if (*d < '0' || *d > '9')
                return -1;
    } else if (*end) {
        return -1;
    }
    memcpy(out, host, n);
    out[n] = '\0';
    return 0;
}

int handshake_host_pinned(const char *host)
{
    char name[64];
    unsigned char addr[16];
    if (!host || host_name(host, name, sizeof name) < 0)
        return 0;
    if (strcasecmp(name, "localhost") == 0)
        return 1;
    if (name[0] == '[') {
        size_t n = strlen(name);
        name[n - 1] = '\0';
        return inet_pton(AF_INET6, name + 1, addr) == 1;
    }
    /* inet_pton takes only the four-part dotted form: "127.1" or "0x7f.1",
     * which some resolvers accept, are names here and not pinned. */
    return inet_pton(AF_INET, name, addr) == 1;
}

/* The host[:port] of an http(s) origin, or NULL for another scheme. */
static const char *origin_authority(const char *origin)
{
    if (strncmp(origin, "http://", 7) == 0)
        return origin + 7;
    if (strncmp(origin, "https://", 8) == 0)
        return origin + 8;
    return NULL;
}

int handshake_origin_allowed(const struct config *cfg, const char *origin, const char *host)
{
    if (!origin)
        return 1; /* not a browser: the allowlist is about browsers */
    if (cfg->origins_any)
        return 1;
    for (int i = 0; i < cfg->origins_count; i++)
        if (strcmp(origin, cfg->origins[i]) == 0)
            return 1;
    if (!cfg->demo || !host)
        return 0;
    /* The demo page is served by tipcastd itself, from whatever address the
     * visitor used, so its origin cannot be listed in advance: it is the
     * Host the browser sent. A Host that is a name could be an attacker's
     * name resolving to this server (DNS rebinding), so only a pinned one
     * counts. */
    const char *rest = origin_authority(origin);
    return rest && strcasecmp(rest, host) == 0 && handshake_host_pinned(host);
}

int handshake_cors_allowed(const struct config *cfg, const char *origin, const char *host)
{
    char oname[64], hname[64];
    if (!origin)
        return 0;
    if (cfg->origins_any)
        return 1;
    for (int i = 0; i < cfg->origins_count; i++)
        if (strcmp(origin, cfg->origins[i]) == 0)
            return 1;
    if (!cfg->demo || !host || !handshake_host_pinned(host))
        return 0;
    /* The demo's pages are served by tipcastd's WebSocket port and call the
     * admin listener's: the same pinned host, another port. */
    const char *rest = origin_authority(origin);
    return rest && host_name(rest, oname, sizeof oname) == 0 && host_name(host, hname, sizeof hname) == 0 &&
           strcasecmp(oname, hname) == 0;
}
