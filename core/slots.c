/* slots.c - Redis Cluster's slots (see slots.h). */
#include "slots.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int node_of(const redisReply *r, const struct slots_node *seed, struct slots_node *out)
{
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 2 || r->element[0]->type != REDIS_REPLY_STRING ||
        r->element[1]->type != REDIS_REPLY_INTEGER || r->element[1]->integer < 1 || r->element[1]->integer > 65535 ||
        r->element[0]->len > SLOTS_HOST_MAX)
        return -1;
    if (r->element[0]->len == 0) {
        if (!seed)
            return -1;
        memcpy(out->host, seed->host, sizeof out->host);
    } else {
        memcpy(out->host, r->element[0]->str, r->element[0]->len);
        out->host[r->element[0]->len] = '\0';
    }
    out->port = (int)r->element[1]->integer;
    return 0;
}

static int fill(struct slots_map *next, const redisReply *r, const struct slots_node *seed, char *err, size_t errlen)
{
    for (size_t s = 0; s < SLOTS_N; s++)
        next->owner[s] = SLOTS_NONE;
    for (size_t i = 0; i < r->elements; i++) {
        const redisReply *e = r->element[i];
        struct slots_node master;
        if (e->type != REDIS_REPLY_ARRAY || e->elements < 3 || e->element[0]->type != REDIS_REPLY_INTEGER ||
            e->element[1]->type != REDIS_REPLY_INTEGER || node_of(e->element[2], seed, &master) < 0) {
            snprintf(err, errlen, "range %zu is not [first, last, [host, port], ...]", i);
            return -1;
        }
        long long first = e->element[0]->integer, last = e->element[1]->integer;
        if (first < 0 || last >= SLOTS_N || first > last) {
            snprintf(err, errlen, "range %zu is %lld..%lld", i, first, last);
            return -1;
        }
        int k = 0;
        while (k < next->nmasters &&
               !(next->masters[k].port == master.port && strcmp(next->masters[k].host, master.host) == 0))
            k++;
        if (k == next->nmasters) {
            if (k == SLOTS_MASTERS_MAX) {
                snprintf(err, errlen, "more than %d masters", SLOTS_MASTERS_MAX);
                return -1;
            }
            next->masters[next->nmasters++] = master;
        }
        for (long long s = first; s <= last; s++) {
            if (next->owner[s] != SLOTS_NONE) {
                snprintf(err, errlen, "slot %lld is in two ranges", s);
                return -1;
            }
            next->owner[s] = (uint16_t)k;
        }
    }
    return 0;
}

int slots_map_parse(struct slots_map *m, const redisReply *r, const struct slots_node *seed, char *err,
                    size_t errlen)
{
    if (!r || r->type != REDIS_REPLY_ARRAY) {
        snprintf(err, errlen, "CLUSTER SLOTS did not answer an array");
        return -1;
    }
    /* Built aside (50 KiB: on the heap), so that a bad reply leaves m as it was. */
    struct slots_map *next = calloc(1, sizeof *next);
    if (!next) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    int rc = fill(next, r, seed, err, errlen);
    if (rc == 0)
        memcpy(m, next, sizeof *next);
    free(next);
    return rc;
}

unsigned slots_unserved(const struct slots_map *m)
{
    unsigned n = 0;
    for (size_t s = 0; s < SLOTS_N; s++)
        n += m->owner[s] == SLOTS_NONE;
    return n;
}

enum slots_redirect slots_redirect_parse(const char *text, size_t len, unsigned *slot, struct slots_node *node)
{
    enum slots_redirect kind;
    size_t i;
    if (len > 6 && memcmp(text, "MOVED ", 6) == 0) {
        kind = SLOTS_MOVED;
        i = 6;
    } else if (len > 4 && memcmp(text, "ASK ", 4) == 0) {
        kind = SLOTS_ASK;
        i = 4;
    } else {
        return SLOTS_NOT_REDIRECT;
    }
    unsigned s = 0;
    size_t digits = 0;
    for (; i < len && text[i] >= '0' && text[i] <= '9' && digits < 6; i++, digits++)
        s = s * 10 + (unsigned)(text[i] - '0');
    if (digits == 0 || s >= SLOTS_N || i >= len || text[i] != ' ')
        return SLOTS_NOT_REDIRECT;
    i++;
    /* host:port, the host possibly an IPv6 address: the port is after the last ':'. */
    const char *hp = text + i;
    size_t hplen = len - i;
    const char *colon = NULL;
    for (size_t k = 0; k < hplen; k++)
        if (hp[k] == ':')
            colon = hp + k;
    if (!colon)
        return SLOTS_NOT_REDIRECT;
    size_t hostlen = (size_t)(colon - hp);
    long port = 0;
    size_t pdigits = 0;
    for (const char *p = colon + 1; p < hp + hplen; p++, pdigits++) {
        if (*p < '0' || *p > '9' || pdigits == 5)
            return SLOTS_NOT_REDIRECT;
        port = port * 10 + (*p - '0');
    }
    if (pdigits == 0 || port < 1 || port > 65535 || hostlen > SLOTS_HOST_MAX)
        return SLOTS_NOT_REDIRECT;
    for (size_t k = 0; k < hostlen; k++)
        if (hp[k] == ' ')
            return SLOTS_NOT_REDIRECT;
    memcpy(node->host, hp, hostlen);
    node->host[hostlen] = '\0';
    node->port = (int)port;
    *slot = s;
    return kind;
}
