/* cidr.c - address blocks and matching (see cidr.h). */
#include "cidr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* Longest text of an address or a block ("ffff:...:ffff/128"). */
#define CIDR_TEXT_MAX 64

/* Clears the bits of addr past the prefix. */
static void mask(uint8_t *addr, int nbytes, int bits)
{
    for (int i = 0; i < nbytes; i++) {
        int keep = bits - 8 * i;
        if (keep >= 8)
            continue;
        addr[i] &= keep <= 0 ? 0 : (uint8_t)(0xff << (8 - keep));
    }
}

int cidr_parse(const char *s, size_t len, struct cidr *out)
{
    char text[CIDR_TEXT_MAX];
    if (len == 0 || len >= sizeof text)
        return -1;
    memcpy(text, s, len);
    text[len] = '\0';
    char *slash = strchr(text, '/');
    long bits = -1;
    if (slash) {
        *slash = '\0';
        const char *b = slash + 1;
        if (*b < '0' || *b > '9' || strlen(b) > 3)
            return -1;
        char *end;
        bits = strtol(b, &end, 10);
        if (*end)
            return -1;
    }
    memset(out, 0, sizeof *out);
    if (inet_pton(AF_INET, text, out->addr) == 1) {
        out->v6 = 0;
    } else if (inet_pton(AF_INET6, text, out->addr) == 1) {
        out->v6 = 1;
    } else {
        return -1;
    }
    int max = out->v6 ? 128 : 32;
    if (bits > max)
        return -1;
    out->bits = bits < 0 ? max : (int)bits;
    mask(out->addr, out->v6 ? 16 : 4, out->bits);
    return 0;
}

int cidr_contains(const struct cidr *c, int v6, const uint8_t *addr)
{
    if (c->v6 != v6)
        return 0;
    int full = c->bits / 8, rest = c->bits % 8;
    if (memcmp(c->addr, addr, (size_t)full) != 0)
        return 0;
    if (rest == 0)
        return 1;
    uint8_t m = (uint8_t)(0xff << (8 - rest));
    return (addr[full] & m) == c->addr[full];
}

int cidr_match_sockaddr(const struct cidr *list, int n, const struct sockaddr *sa)
{
    uint8_t addr[16];
    int v6;
    if (sa->sa_family == AF_INET) {
        memcpy(addr, &((const struct sockaddr_in *)sa)->sin_addr, 4);
        v6 = 0;
    } else if (sa->sa_family == AF_INET6) {
        const uint8_t *a = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
        static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        if (memcmp(a, mapped, sizeof mapped) == 0) {
            memcpy(addr, a + 12, 4);
            v6 = 0;
        } else {
            memcpy(addr, a, 16);
            v6 = 1;
        }
    } else {
        return 0;
    }
    for (int i = 0; i < n; i++)
        if (cidr_contains(&list[i], v6, addr))
            return 1;
    return 0;
}

const char *cidr_format(const struct cidr *c, char *buf, size_t cap)
{
    char a[INET6_ADDRSTRLEN];
    if (!inet_ntop(c->v6 ? AF_INET6 : AF_INET, c->addr, a, sizeof a))
        a[0] = '\0';
    snprintf(buf, cap, "%s/%d", a, c->bits);
    return buf;
}
