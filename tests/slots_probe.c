/* slots_probe.c - core/slots.c and hash_keyslot against a real cluster, for
 * tests/test_cluster.py. Usage: slots_probe HOST PORT
 *
 * Reads CLUSTER SLOTS from HOST:PORT and prints the map, a line per run of
 * slots with one owner: "map FIRST LAST HOST:PORT" (or "- " for none).
 * Then, for each line on stdin:
 *   "k KEY"  prints "slot SLOT HOST:PORT", the key's slot and owner;
 *   "e TEXT" prints "moved|ask SLOT HOST:PORT" or "no", TEXT read as an
 *            error reply. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "hash.h"
#include "slots.h"

static struct slots_map map;

static void owner(unsigned s, char *out, size_t n)
{
    if (map.owner[s] == SLOTS_NONE)
        snprintf(out, n, "-");
    else
        snprintf(out, n, "%s:%d", map.masters[map.owner[s]].host, map.masters[map.owner[s]].port);
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: slots_probe HOST PORT\n");
        return 2;
    }
    struct slots_node seed;
    snprintf(seed.host, sizeof seed.host, "%s", argv[1]);
    seed.port = atoi(argv[2]);
    redisContext *c = redisConnect(seed.host, seed.port);
    if (!c || c->err) {
        fprintf(stderr, "slots_probe: cannot connect: %s\n", c ? c->errstr : "out of memory");
        return 1;
    }
    redisReply *r = redisCommand(c, "CLUSTER SLOTS");
    char err[256];
    if (slots_map_parse(&map, r, &seed, err, sizeof err) < 0) {
        fprintf(stderr, "slots_probe: %s\n", err);
        return 1;
    }
    freeReplyObject(r);
    redisFree(c);
    char a[300], b[300];
    for (unsigned s = 0, first = 0; s < SLOTS_N; s++) {
        if (s + 1 < SLOTS_N && map.owner[s + 1] == map.owner[s])
            continue;
        owner(s, a, sizeof a);
        printf("map %u %u %s\n", first, s, a);
        first = s + 1;
    }
    char line[4096];
    while (fgets(line, sizeof line, stdin)) {
        size_t len = strcspn(line, "\n");
        line[len] = '\0';
        if (len >= 2 && line[0] == 'k' && line[1] == ' ') {
            unsigned s = (unsigned)hash_keyslot(line + 2, len - 2);
            owner(s, a, sizeof a);
            printf("slot %u %s\n", s, a);
        } else if (len >= 2 && line[0] == 'e' && line[1] == ' ') {
            unsigned s;
            struct slots_node n;
            enum slots_redirect k = slots_redirect_parse(line + 2, len - 2, &s, &n);
            if (k == SLOTS_NOT_REDIRECT) {
                printf("no\n");
            } else {
                snprintf(b, sizeof b, "%s:%d", n.host, n.port);
                printf("%s %u %s\n", k == SLOTS_MOVED ? "moved" : "ask", s, b);
            }
        } else {
            printf("?\n");
        }
        fflush(stdout);
    }
    return 0;
}
