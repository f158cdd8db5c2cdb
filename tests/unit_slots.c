/* unit_slots.c - tests of core/slots.c: CLUSTER SLOTS replies read from
 * RESP bytes, and MOVED / ASK redirections (key slots: unit_hash); and of
 * core/rcluster.c's seed list.
 * tests/test_cluster.py checks the same against a real cluster. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "rcluster.h"
#include "redis.h"
#include "slots.h"
#include "unit.h"

/* A reply from RESP bytes, as hiredis reads one off the wire. */
static redisReply *reply_of(const char *resp)
{
    redisReader *r = redisReaderCreate();
    void *out = NULL;
    redisReaderFeed(r, resp, strlen(resp));
    if (redisReaderGetReply(r, &out) != REDIS_OK)
        out = NULL;
    redisReaderFree(r);
    return out;
}

static void test_map_parse(void)
{
    static struct slots_map m;
    struct slots_node seed = {"10.0.0.9", 7000};
    char err[128];
    char resp[2048];
    snprintf(resp, sizeof resp,
             "*3\r\n"
             "*4\r\n:0\r\n:5460\r\n*3\r\n$9\r\n127.0.0.1\r\n:7001\r\n$1\r\na\r\n"
             "*3\r\n$9\r\n127.0.0.1\r\n:7004\r\n$1\r\nd\r\n" /* a replica: not a master */
             "*3\r\n:5461\r\n:10922\r\n*3\r\n$0\r\n\r\n:7002\r\n$1\r\nb\r\n"
             "*3\r\n:10923\r\n:16383\r\n*3\r\n$9\r\n127.0.0.1\r\n:7001\r\n$1\r\na\r\n");
    redisReply *r = reply_of(resp);
    CHECK(r != NULL);
    CHECK_INT(slots_map_parse(&m, r, &seed, err, sizeof err), 0);
    CHECK_INT(m.nmasters, 2);
    CHECK_STR(m.masters[0].host, "127.0.0.1");
    CHECK_INT(m.masters[0].port, 7001);
    /* An empty host: the node that answered. */
    CHECK_STR(m.masters[1].host, "10.0.0.9");
    CHECK_INT(m.masters[1].port, 7002);
    CHECK_INT(m.owner[0], 0);
    CHECK_INT(m.owner[5460], 0);
    CHECK_INT(m.owner[5461], 1);
    CHECK_INT(m.owner[10922], 1);
    CHECK_INT(m.owner[10923], 0);
    CHECK_INT(m.owner[16383], 0);
    CHECK_INT(slots_unserved(&m), 0);
    freeReplyObject(r);

    /* A gap: those slots have no master. */
    r = reply_of("*1\r\n*3\r\n:100\r\n:199\r\n*2\r\n$1\r\nh\r\n:7001\r\n");
    CHECK_INT(slots_map_parse(&m, r, &seed, err, sizeof err), 0);
    CHECK_INT(slots_unserved(&m), 16384 - 100);
    CHECK_INT(m.owner[99], SLOTS_NONE);
    CHECK_INT(m.owner[150], 0);
    freeReplyObject(r);

    /* Refused, and the map left as it was. */
    const char *bad[] = {
        "+OK\r\n",                                                                      /* not an array */
        "*1\r\n:5\r\n",                                                                 /* not a range */
        "*1\r\n*3\r\n:10\r\n:5\r\n*2\r\n$1\r\nh\r\n:7001\r\n",                          /* backwards */
        "*1\r\n*3\r\n:0\r\n:16384\r\n*2\r\n$1\r\nh\r\n:7001\r\n",                       /* past the last slot */
        "*1\r\n*3\r\n:-1\r\n:5\r\n*2\r\n$1\r\nh\r\n:7001\r\n",                          /* negative */
        "*2\r\n*3\r\n:0\r\n:10\r\n*2\r\n$1\r\nh\r\n:1\r\n*3\r\n:10\r\n:20\r\n*2\r\n$1\r\nh\r\n:2\r\n", /* twice */
        "*1\r\n*3\r\n:0\r\n:1\r\n*2\r\n$1\r\nh\r\n:0\r\n",                              /* port 0 */
        "*1\r\n*3\r\n:0\r\n:1\r\n*2\r\n$1\r\nh\r\n$4\r\n7001\r\n",                      /* port as a string */
        "*1\r\n*2\r\n:0\r\n:1\r\n",                                                     /* no master */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        r = reply_of(bad[i]);
        CHECK(r != NULL);
        err[0] = '\0';
        CHECK_INT(slots_map_parse(&m, r, &seed, err, sizeof err), -1);
        CHECK(err[0] != '\0');
        CHECK_INT(m.owner[150], 0);
        CHECK_INT(slots_unserved(&m), 16384 - 100);
        freeReplyObject(r);
    }
    /* An empty host without a seed. */
    r = reply_of("*1\r\n*3\r\n:0\r\n:1\r\n*2\r\n$0\r\n\r\n:7001\r\n");
    CHECK_INT(slots_map_parse(&m, r, NULL, err, sizeof err), -1);
    freeReplyObject(r);
    CHECK_INT(slots_map_parse(&m, NULL, &seed, err, sizeof err), -1);

    /* 65 masters: one too many. */
    char *big = malloc(65 * 64 + 16);
    int n = sprintf(big, "*65\r\n");
    for (int i = 0; i < 65; i++)
        n += sprintf(big + n, "*3\r\n:%d\r\n:%d\r\n*2\r\n$1\r\nh\r\n:%d\r\n", i, i, 7000 + i);
    r = reply_of(big);
    CHECK_INT(slots_map_parse(&m, r, &seed, err, sizeof err), -1);
    CHECK(strstr(err, "masters") != NULL);
    freeReplyObject(r);
    free(big);
}

static enum slots_redirect redirect(const char *text, unsigned *s, struct slots_node *n)
{
    return slots_redirect_parse(text, strlen(text), s, n);
}

static void test_redirect(void)
{
    unsigned s = 99999;
    struct slots_node n = {"", 0};
    CHECK_INT(redirect("MOVED 3999 127.0.0.1:6381", &s, &n), SLOTS_MOVED);
    CHECK_INT(s, 3999);
    CHECK_STR(n.host, "127.0.0.1");
    CHECK_INT(n.port, 6381);
    CHECK_INT(redirect("ASK 16383 redis-2.internal:7002", &s, &n), SLOTS_ASK);
    CHECK_INT(s, 16383);
    CHECK_STR(n.host, "redis-2.internal");
    CHECK_INT(n.port, 7002);
    /* IPv6: the port follows the last colon. An empty host is kept empty. */
    CHECK_INT(redirect("MOVED 0 ::1:7000", &s, &n), SLOTS_MOVED);
    CHECK_STR(n.host, "::1");
    CHECK_INT(redirect("MOVED 7 :7000", &s, &n), SLOTS_MOVED);
    CHECK_STR(n.host, "");
    CHECK_INT(n.port, 7000);
    const char *no[] = {"ERR unknown command", "MOVED", "MOVED 3999", "MOVED 16384 h:1", "MOVED x h:1",
                        "MOVED 1 h", "MOVED 1 h:", "MOVED 1 h:0", "MOVED 1 h:65536", "MOVED 1 h:70a",
                        "MOVED 1 h:123456", "MOVED 1  h:1 x", "ASK 1 h :1", "moved 1 h:1", "NOSCRIPT No matching",
                        "MOVED 0000001 h:1", ""};
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++) {
        n.port = 4242;
        if (redirect(no[i], &s, &n) != SLOTS_NOT_REDIRECT)
            fprintf(stderr, "taken as a redirection: \"%s\"\n", no[i]);
        CHECK_INT(redirect(no[i], &s, &n), SLOTS_NOT_REDIRECT);
        CHECK_INT(n.port, 4242);
    }
}

/* rcluster_init's seed list. */
static void test_seeds(void)
{
    static struct rcluster rc;
    char err[160];
    CHECK_INT(rcluster_init(&rc, NULL, "127.0.0.1:7000,redis-2.internal:7001,::1:7002,", NULL, err, sizeof err), 0);
    CHECK_INT(rc.nseeds, 3);
    CHECK_STR(rc.seeds[0].host, "127.0.0.1");
    CHECK_INT(rc.seeds[0].port, 7000);
    CHECK_STR(rc.seeds[1].host, "redis-2.internal");
    CHECK_STR(rc.seeds[2].host, "::1");
    CHECK_INT(rc.seeds[2].port, 7002);
    const char *bad[] = {"", "h", "h:", ":7000", "h:0", "h:65536", "h:70x", "h:1,,h:2", "h:-1",
                         "a:1,b:1,c:1,d:1,e:1,f:1,g:1,h:1,i:1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        if (rcluster_init(&rc, NULL, bad[i], NULL, err, sizeof err) != -1)
            fprintf(stderr, "seed list taken: \"%s\"\n", bad[i]);
        CHECK_INT(rcluster_init(&rc, NULL, bad[i], NULL, err, sizeof err), -1);
        CHECK(err[0] != '\0');
    }
}

/* Where a command's key is, for routing it on a cluster. */
static int key_of(int argc, const char **argv)
{
    size_t len[16];
    for (int i = 0; i < argc; i++)
        len[i] = strlen(argv[i]);
    return redis_key_index(argc, argv, len);
}

static void test_key_index(void)
{
    CHECK_INT(key_of(2, (const char *[]){"HGETALL", "tc:{r:a}:goal"}), 1);
    CHECK_INT(key_of(3, (const char *[]){"xack", "tc:{w:1}:outbox", "ledger"}), 1);
    CHECK_INT(key_of(6, (const char *[]){"XGROUP", "CREATE", "tc:{w:1}:outbox", "g", "0", "MKSTREAM"}), 2);
    CHECK_INT(key_of(3, (const char *[]){"XINFO", "GROUPS", "tc:{w:1}:outbox"}), 2);
    CHECK_INT(key_of(11, (const char *[]){"XREADGROUP", "GROUP", "g", "n", "COUNT", "1", "BLOCK", "5", "STREAMS",
                                         "tc:{w:1}:outbox", ">"}),
              9);
    CHECK_INT(key_of(4, (const char *[]){"XREADGROUP", "GROUP", "g", "STREAMS"}), -1);
    CHECK_INT(key_of(1, (const char *[]){"INFO"}), -1);
    CHECK_INT(key_of(2, (const char *[]){"info", "persistence"}), -1);
    CHECK_INT(key_of(3, (const char *[]){"WAIT", "1", "100"}), -1);
    CHECK_INT(key_of(5, (const char *[]){"EVALSHA", "abc", "1", "tc:{w:2}:outbox", "info"}), 3);
    CHECK_INT(key_of(4, (const char *[]){"EVAL", "return 1", "0", "x"}), -1);
}

int main(void)
{
    test_key_index();
    test_seeds();
    test_map_parse();
    test_redirect();
    return unit_finish("unit_slots");
}
