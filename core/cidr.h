/* cidr.h - IPv4 and IPv6 address blocks ("10.0.0.0/8", "::1"), and
 * whether a peer's address falls in one: the allow list of the metrics page
 * (setting metrics-allow).
 *
 * An IPv4 peer reached over an IPv6 socket (::ffff:a.b.c.d) is matched as
 * the IPv4 address it is.
 *
 * Pure: no I/O (parsing is inet_pton's). */
#ifndef TIPCAST_CIDR_H
#define TIPCAST_CIDR_H

#include <stddef.h>
#include <stdint.h>

struct sockaddr;

struct cidr {
    int v6;           /* 0: IPv4 (addr[0..4)), 1: IPv6 */
    uint8_t addr[16]; /* the block's address, host bits cleared */
    int bits;         /* prefix length */
};

/* Parses ADDR or ADDR/BITS (len bytes, no blanks). An address alone is a
 * block of one. Returns 0, or -1 when it is not one. Host bits set past the
 * prefix are cleared, as routers write them. */
int cidr_parse(const char *s, size_t len, struct cidr *out);

/* 1 when the address (4 bytes when !v6, else 16) is in the block. */
int cidr_contains(const struct cidr *c, int v6, const uint8_t *addr);

/* 1 when the socket address (AF_INET or AF_INET6) is in one of the n
 * blocks. */
int cidr_match_sockaddr(const struct cidr *list, int n, const struct sockaddr *sa);

/* Writes the block as text (ADDR/BITS) into buf; returns buf. */
const char *cidr_format(const struct cidr *c, char *buf, size_t cap);

#endif
